// Placeholder translation unit for components that have no library sources yet.
