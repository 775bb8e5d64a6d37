//! Every Lambda function's build script (`build = "../lambda_build.rs"` in its Cargo.toml).
//!
//! For arm64 Linux (the Lambda target), the binary is linked as a position-dependent
//! executable. A position-independent one carries ~0.4 MB of relocations that the loader
//! applies at every cold start; without them each bootstrap is about 8 % smaller and starts with
//! less work. The cost is a fixed load address for the binary's own code (shared libraries,
//! stack and heap stay randomised), as Go builds its Lambda binaries by default. Only these
//! binaries are linked so: tests, build scripts, proc macros and the local server are not.

fn main() {
    println!("cargo::rerun-if-changed=../lambda_build.rs");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if target("CARGO_CFG_TARGET_ARCH") == "aarch64" && target("CARGO_CFG_TARGET_OS") == "linux" {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }
}
