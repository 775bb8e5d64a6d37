//! Compacts the committed OpenAPI document (`docs/openapi.json`, pretty-printed for readers and
//! diffs) into the build's output directory: `http::docs` serves it from there, half the bytes
//! in every binary that embeds it.

fn main() {
    let source = std::path::Path::new("../docs/openapi.json");
    println!("cargo::rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let document: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", source.display()));
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapi.json");
    std::fs::write(&out, document.to_string()).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
