// THE list of meter protocols: one line each, MP_PROTOCOL(<namespace>, <spec>, <runtime>),
// in the order they are listed everywhere (config errors, `meterpipe decode --help`). The
// namespace is mp::protocols::<namespace>, defined in protocols/<folder>/spec.cpp and
// protocol.cpp. Included by protocols/specs.cpp and protocols/registry.cpp only.
MP_PROTOCOL(dsmr, spec, runtime)
MP_PROTOCOL(modbus, spec, runtime)
MP_PROTOCOL(modbus, sunspec_spec, sunspec_runtime)
MP_PROTOCOL(mbus, spec, runtime)
MP_PROTOCOL(sml, spec, runtime)
