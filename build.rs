//! Links the unwinder statically (libgcc_eh) instead of loading
//! libgcc_s.so.1 at run time, in dynamic glibc builds.
//!
//! std names `-lgcc_s` for its unwinder on linux-gnu; with panic = "abort"
//! the unwinder only ever runs to print a backtrace, yet the shared
//! library is loaded, relocated and kept resident (about 100 KB) by every
//! MCU. A linker script by that name in a folder searched first makes the
//! linker take libgcc_eh.a instead, as `gcc -static-libgcc` does. Static
//! builds (+crt-static) already link libgcc_eh and are left alone.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if os != "linux" || target_env != "gnu" || features.split(',').any(|f| f == "crt-static") {
        return;
    }
    let dir = PathBuf::from(env::var("OUT_DIR").unwrap()).join("static-unwind");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("libgcc_s.so"), "INPUT(-lgcc_eh)\n").unwrap();
    println!("cargo:rustc-link-search=native={}", dir.display());
}
