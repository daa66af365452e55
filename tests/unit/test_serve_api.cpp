// Unit tests of the serve worker's state and REST routing (serve/state.h, serve/api.h):
// bus envelopes in, JSON and HTTP statuses out, with the time given explicitly.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "serve/api.h"
#include "serve/metric_names.h"
#include "serve/state.h"

using namespace mp::serve;

namespace {

constexpr int64_t kNs = 1000000000LL;
constexpr int64_t kT0 = 1699999980LL * kNs;  // a whole minute

void add_number(meterpipe::Reading* r, const std::string& name, double v, const std::string& unit) {
  auto* x = r->add_values();
  x->set_name(name);
  x->set_number(v);
  x->set_unit(unit);
}

meterpipe::Envelope reading(const std::string& meter, int64_t t_ns, double imp_w, double exp_w,
                            double imp_kwh, uint64_t seq) {
  meterpipe::Envelope env;
  env.set_publisher("process");
  env.set_seq(seq);
  env.set_send_time_ns(t_ns + 1000000);
  auto* r = env.mutable_reading();
  r->set_meter(meter);
  r->set_protocol("dsmr");
  r->set_receive_time_ns(t_ns);
  r->set_receive_mono_ns(42);
  add_number(r, "power_import_w", imp_w, "W");
  add_number(r, "power_export_w", exp_w, "W");
  add_number(r, "energy_import_t1_kwh", imp_kwh, "kWh");
  add_number(r, "energy_import_t2_kwh", 100, "kWh");
  add_number(r, "voltage_l1_v", 230.5, "V");
  auto* t = r->add_values();
  t->set_name("text_message");
  t->set_text("hello \"world\"");
  return env;
}

meterpipe::Envelope relay_event(const std::string& relay, bool on, const std::string& reason) {
  meterpipe::Envelope env;
  env.set_publisher("actuate");
  env.set_seq(1);
  env.set_send_time_ns(kT0);
  auto* e = env.mutable_relay();
  e->set_relay(relay);
  e->set_old_state(!on);
  e->set_new_state(on);
  e->set_reason(reason);
  e->set_mode("auto");
  e->set_ok(true);
  return env;
}

meterpipe::Envelope health(const std::string& worker, int pid, uint64_t frames) {
  meterpipe::Envelope env;
  auto* h = env.mutable_health();
  h->set_worker(worker);
  h->set_pid(pid);
  h->set_uptime_s(10);
  (*h->mutable_counters())["frames_home"] = frames;
  (*h->mutable_counters())["bus_lost"] = 0;
  (*h->mutable_gauges())["oldest_unsent_age_s"] = 1.5;
  (*h->mutable_info())["last_error"] = "none";
  return env;
}

double number_after(const std::string& s, const std::string& key) {
  const size_t p = s.find(key);
  return p == std::string::npos ? -1e300 : std::strtod(s.c_str() + p + key.size(), nullptr);
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

struct Fixture {
  State st{{"home"}, {{"boiler", "home"}}, {"acquire", "process", "actuate", "serve"}};
  ServeInfo info;
  Response get(const std::string& path, const std::string& query = "",
               const std::string& method = "GET", int64_t now = kT0 + 61 * kNs) {
    ApiContext ctx{st, info, now, 100 * kNs, nullptr};
    return handle(Request{method, path, query}, ctx);
  }
};

}  // namespace

TEST_CASE("net power and energy totals from a reading") {
  auto env = reading("home", kT0, 800, 0, 5, 1);
  CHECK(*net_power(env.reading()) == 800);
  CHECK(*energy_total(env.reading(), "import") == 105);
  CHECK_FALSE(energy_total(env.reading(), "export"));
  add_number(env.mutable_reading(), "power_net_w", -3, "W");
  CHECK(*net_power(env.reading()) == -3);
}

TEST_CASE("latest reading, history and minute averages") {
  Fixture f;
  for (int i = 0; i < 61; ++i)
    REQUIRE(f.st.on_reading(reading("home", kT0 + i * kNs, i < 30 ? 1000 : 0, i < 30 ? 0 : 500,
                                    10 + i * 0.01, uint64_t(i + 1)),
                            19675));
  auto r = f.get("/api/last/home");
  CHECK(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(has(r.body, "\"meter\":\"home\""));
  CHECK(has(r.body, "\"seq\":61"));
  CHECK(has(r.body, "\"net_w\":-500"));
  CHECK(has(r.body, "\"power_export_w\":500"));
  CHECK(has(r.body, "\"text_message\":\"hello \\\"world\\\"\""));
  CHECK(has(r.body, "\"units\":{\"power_import_w\":\"W\""));
  // today: 0.6 kWh more on t1 since the first reading (serve started during the day)
  CHECK(number_after(r.body, "\"import_kwh\":{\"value\":") == doctest::Approx(0.6));
  CHECK(has(r.body, "\"from_midnight\":false"));

  auto all = f.get("/api/last");
  CHECK(all.status == 200);
  CHECK(has(all.body, "{\"home\":{\"meter\":\"home\""));

  // the last 60 s: 29 s at 1000 W import (1..29), 31 s at 500 W export (30..60)
  auto avg = f.get("/api/minuteavg/home", "", "GET", kT0 + 60 * kNs + 500000000);
  CHECK(avg.status == 200);
  const double want = 29.0 * 1000 / 60;
  char buf[64];
  std::snprintf(buf, sizeof buf, "\"power_import_w\":%.15g", want);
  CHECK(has(avg.body, buf));
  CHECK(has(avg.body, "\"samples\":60"));

  auto h = f.get("/api/history/home", "minutes=1");
  CHECK(h.status == 200);
  CHECK(has(h.body, "\"resolution_s\":1"));
  CHECK(has(h.body, "[" + std::to_string((kT0 + 60 * kNs) / 1000000) + ",-500]"));
  auto hm = f.get("/api/history/home", "minutes=10&resolution=60");
  CHECK(hm.status == 200);
  // minute kT0: 30 s at +1000, 30 s at -500 -> average 250, min -500, max 1000
  CHECK(has(hm.body, "[" + std::to_string(kT0 / 1000000) + ",250,-500,1000]"));
}

TEST_CASE("bad requests get 4xx naming the problem") {
  Fixture f;
  f.st.on_reading(reading("home", kT0, 1, 0, 1, 1), 19675);
  CHECK(f.get("/api/last/nope").status == 404);
  CHECK(has(f.get("/api/last/nope").body, "\"meter\":\"nope\""));
  CHECK(f.get("/api/minuteavg/nope").status == 404);
  CHECK(f.get("/api/history/nope").status == 404);
  for (const char* q : {"minutes=abc", "minutes=0", "minutes=1441", "minutes=-5", "minutes=1e3",
                        "minutes=", "minutes=99999999999999999999"}) {
    CAPTURE(q);
    auto r = f.get("/api/history/home", q);
    CHECK(r.status == 400);
    CHECK(has(r.body, "\"parameter\":\"minutes\""));
  }
  CHECK(f.get("/api/history/home", "minutes=120&resolution=1").status == 400);
  CHECK(has(f.get("/api/history/home", "resolution=7").body, "\"parameter\":\"resolution\""));
  CHECK(has(f.get("/api/history/home", "series=power_x").body, "\"parameter\":\"series\""));
  CHECK(f.get("/api/history/home", "minutes=%4").status == 400);
  CHECK(f.get("/api/history/home", "minutes=%00").status == 400);
  CHECK(f.get("/api/history/home", "minutes=%31%30").status == 200);  // "10"
  CHECK(f.get("/api/history/home", "other=1").status == 200);         // unknown: ignored
  CHECK(f.get("/nope").status == 404);
  CHECK(f.get("/api").status == 404);
  CHECK(f.get("/api/last/home/extra").status == 404);
  CHECK(f.get("/api/last/").status == 404);
  CHECK(f.get("/ws").status == 426);
  auto post = f.get("/api/last", "", "POST");
  CHECK(post.status == 405);
  CHECK(post.headers.size() == 1);
  CHECK(f.get("", "").status == 400);
  // a configured meter without readings yet
  State empty({"home"}, {}, {});
  ServeInfo info;
  ApiContext ctx{empty, info, kT0, 0, nullptr};
  CHECK(handle(Request{"GET", "/api/last/home", ""}, ctx).status == 404);
  CHECK(handle(Request{"GET", "/api/last", ""}, ctx).body == "{}");
  CHECK(handle(Request{"GET", "/api/history/home", ""}, ctx).status == 200);
}

TEST_CASE("query parsing") {
  auto q = parse_query("a=1&b=x%20y&a=2&&c&d=e+f");
  REQUIRE(q);
  CHECK(q->at("a") == "1");
  CHECK(q->at("b") == "x y");
  CHECK(q->at("c") == "");
  CHECK(q->at("d") == "e f");
  CHECK_FALSE(parse_query("a=%zz"));
  CHECK_FALSE(parse_query("a=%"));
  CHECK(parse_query("")->empty());
  long v = 0;
  CHECK(parse_int("60", 1, 1440, v));
  CHECK(v == 60);
  CHECK_FALSE(parse_int("+60", 1, 1440, v));
  CHECK_FALSE(parse_int("60 ", 1, 1440, v));
  CHECK_FALSE(parse_int("0x10", 1, 1440, v));
}

TEST_CASE("relays: state and reason of the last switch, or actuate's heartbeat") {
  Fixture f;
  auto r = f.get("/api/relays");
  CHECK(r.status == 200);
  CHECK(has(r.body, "\"name\":\"boiler\",\"meter\":\"home\",\"configured\":true,\"on\":null"));
  // actuate's heartbeat carries relay_<name>
  meterpipe::Envelope h = health("actuate", 7, 0);
  (*h.mutable_health()->mutable_gauges())["relay_boiler"] = 1;
  f.st.on_health(h, 1 * kNs, kT0);
  CHECK(has(f.get("/api/relays").body, "\"on\":true"));
  f.st.on_relay(relay_event("boiler", false, "net 300 W above 100 W for 60 s"));
  r = f.get("/api/relays");
  CHECK(has(r.body, "\"on\":false"));
  CHECK(has(r.body, "\"reason\":\"net 300 W above 100 W for 60 s\""));
  CHECK(has(r.body, "\"switches\":1"));
  const std::string ws = State::relay_event_json(relay_event("pump", true, "x"));
  CHECK(has(ws, "{\"type\":\"relay\",\"relay\":\"pump\""));
  CHECK(has(ws, "\"on\":true"));
}

TEST_CASE("status: worker health, rates and per-meter counters") {
  Fixture f;
  f.st.on_reading(reading("home", kT0 + 60 * kNs, 1, 0, 1, 1), 19675);
  f.st.on_health(health("acquire", 11, 100), 10 * kNs, kT0);
  f.st.on_health(health("acquire", 11, 120), 30 * kNs, kT0);
  f.info.pid = 99;
  f.info.listen = "127.0.0.1:8080";
  ApiContext ctx{f.st, f.info, kT0 + 61 * kNs, 31 * kNs, nullptr};
  auto r = handle(Request{"GET", "/api/status", ""}, ctx);
  CHECK(r.status == 200);
  CHECK(has(r.body, "\"pid\":99"));
  CHECK(has(r.body, "\"acquire\":{\"up\":true,\"pid\":11"));
  CHECK(has(r.body, "\"process\":{\"up\":false,\"pid\":0"));
  CHECK(has(r.body, "\"rates_per_s\":{\"bus_lost\":0,\"frames_home\":1}"));
  CHECK(has(r.body, "\"last_error\":\"none\""));
  CHECK(has(r.body, "\"meters\":{\"home\":{\"configured\":true,\"readings\":1"));
  CHECK(has(
      r.body,
      "\"workers\":{\"acquire\":{\"counters\":{\"frames\":120},\"rates_per_s\":{\"frames\":1}}}"));
  // a worker that restarted (new pid) has its rates start again
  f.st.on_health(health("acquire", 12, 3), 32 * kNs, kT0);
  ApiContext ctx2{f.st, f.info, kT0 + 61 * kNs, 33 * kNs, nullptr};
  CHECK(has(handle(Request{"GET", "/api/status", ""}, ctx2).body, "\"rates_per_s\":{}"));
}

TEST_CASE("metrics: values, relays and worker health in one valid exposition") {
  Fixture f;
  f.st.on_reading(reading("home", kT0, 800, 0, 5, 1), 19675);
  f.st.on_relay(relay_event("boiler", true, "x"));
  f.st.on_health(health("process", 5, 7), 1 * kNs, kT0);
  auto r = f.get("/metrics", "", "GET");
  CHECK(r.status == 200);
  CHECK(has(r.content_type, "text/plain; version=0.0.4"));
  const std::string& t = r.body;
  CHECK(has(t, "# TYPE meterpipe_power_import_watts gauge\n"));
  CHECK(has(t, "meterpipe_power_import_watts{meter=\"home\"} 800\n"));
  CHECK(has(t, "meterpipe_power_net_watts{meter=\"home\"} 800\n"));  // derived
  CHECK(has(t, "# TYPE meterpipe_energy_import_t1_kwh_total counter\n"));
  CHECK(has(t, "meterpipe_voltage_l1_volts{meter=\"home\"} 230.5\n"));
  CHECK_FALSE(has(t, "text_message"));
  CHECK(has(t, "meterpipe_relay_on{relay=\"boiler\"} 1\n"));
  CHECK(has(t, "meterpipe_worker_frames_total{meter=\"home\",worker=\"process\"} 7\n"));
  CHECK(has(t, "meterpipe_worker_oldest_unsent_age_seconds{worker=\"process\"} 1.5\n"));
  CHECK(has(t, "meterpipe_worker_up{worker=\"process\"} 0\n"));  // heartbeat 99 s old
  CHECK(has(t, "meterpipe_worker_up{worker=\"acquire\"} 0\n"));
  CHECK(t.back() == '\n');
  // every family once, every metric name lint-clean
  size_t pos = 0;
  while ((pos = t.find("# TYPE ", pos)) != std::string::npos) {
    const size_t sp = t.find(' ', pos + 7), nl = t.find('\n', pos);
    const std::string name = t.substr(pos + 7, sp - pos - 7);
    const std::string type = t.substr(sp + 1, nl - sp - 1);
    CAPTURE(name);
    CHECK(lint_name(name, type == "counter" ? MetricType::counter : MetricType::gauge) == "");
    CHECK(t.find("# TYPE " + name + " ", nl) == std::string::npos);
    pos = nl;
  }
}

TEST_CASE("WebSocket reading message") {
  Fixture f;
  auto env = reading("home", kT0, 0, 250, 5, 7);
  f.st.on_reading(env, 19675);
  const std::string m = f.st.reading_event_json(env);
  CHECK(m.rfind("{\"type\":\"reading\",\"reading\":{\"meter\":\"home\"", 0) == 0);
  CHECK(has(m, "\"seq\":7"));
  CHECK(has(m, "\"net_w\":-250"));
  CHECK(has(m, "\"receive_mono_ns\":42"));
  CHECK(m.back() == '}');
  CHECK_FALSE(has(m, "\"units\""));
}

TEST_CASE("bounded: meters beyond the cap are refused") {
  State st({}, {}, {});
  for (size_t i = 0; i < kMaxMeters + 5; ++i)
    st.on_reading(reading("m" + std::to_string(i), kT0, 1, 0, 1, 1), 19675);
  CHECK(st.meters().size() == kMaxMeters);
}
