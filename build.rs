//! Link settings of the klipper_mcu binary that keep an idle MCU's
//! resident memory down, in builds where they apply.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let os = var("CARGO_CFG_TARGET_OS");
    let target_env = var("CARGO_CFG_TARGET_ENV");
    let crt_static = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if os != "linux" || target_env != "gnu" {
        return;
    }
    if !crt_static {
        static_unwinder();
    }
    symbol_order(&var("TARGET"));
    packed_relocations(&var("TARGET"), &var("HOST"));
}

/// Links the unwinder statically (libgcc_eh) instead of loading
/// libgcc_s.so.1 at run time, in dynamic builds.
///
/// std names `-lgcc_s` for its unwinder on linux-gnu; with panic = "abort"
/// the unwinder only ever runs to print a backtrace, yet the shared
/// library is loaded, relocated and kept resident (about 100 KB) by every
/// MCU. A linker script by that name in a folder searched first makes the
/// linker take libgcc_eh.a instead, as `gcc -static-libgcc` does. Static
/// builds (+crt-static) already link libgcc_eh.
fn static_unwinder() {
    let dir = PathBuf::from(env::var("OUT_DIR").unwrap()).join("static-unwind");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("libgcc_s.so"), "INPUT(-lgcc_eh)\n").unwrap();
    println!("cargo:rustc-link-search=native={}", dir.display());
}

/// Places the functions an MCU runs from start-up to idle first in its
/// text, in the order `link/<target>.order` lists them (see
/// benches/symbol_order.py, which writes it).
///
/// The kernel maps a program's text 64 KB around each page it faults in
/// (fault-around), and more for a large page-cache folio: code an idle MCU
/// runs, scattered among code it never runs, keeps nearly all of the text
/// resident (about 450 of 520 KB), where the same code packed together
/// keeps about 200 KB (mcubench idle, cold page cache).
///
/// Only for x86_64 linux-gnu linked by rustc's default linker there
/// (rust-lld, which reads the list; GNU ld does not know the option), so
/// not when a linker is configured (RUSTC_LINKER: the Dockerfile's cross
/// and static builds) or rustflags change the linker. The names carry
/// rustc's hashes, which follow the profile too (a list taken from a build
/// with symbols would not fit the stripped release build): a list left
/// stale by a rustc, dependency or profile change matches fewer functions and the text falls back towards the default
/// order; the link never fails on it.
fn symbol_order(target: &str) {
    let list = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("link")
        .join(format!("{target}.order"));
    println!("cargo:rerun-if-changed={}", list.display());
    if !links_with_rust_lld(target) || !list.exists() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
        list.display()
    );
    // Two moves of whole sections (a linker script with INSERT only adds
    // to the default layout):
    // - `_init` (.init), which libc runs at start-up, comes after the
    //   whole text by default: its fault mapped the last 48 KB of the
    //   text, code an idle MCU never runs. Before the text, it lands
    //   among the code that is placed first.
    // - The unwind tables (only read to print a backtrace) follow the
    //   read-only data by default, and the 64 KB around the data an idle
    //   MCU reads took 20 to 40 KB of them along. After the text, in a
    //   read-only segment of their own, nothing maps them.
    let script = PathBuf::from(env::var("OUT_DIR").unwrap()).join("layout.ld");
    fs::write(
        &script,
        "SECTIONS {\n  .init : { KEEP(*(SORT_NONE(.init))) }\n  \
         .fini : { KEEP(*(SORT_NONE(.fini))) }\n} INSERT BEFORE .text;\n\
         SECTIONS {\n  .gcc_except_table : { *(.gcc_except_table .gcc_except_table.*) }\n  \
         .eh_frame_hdr : { *(.eh_frame_hdr) }\n  .eh_frame : { KEEP(*(.eh_frame)) }\n\
         } INSERT AFTER .text;\n",
    )
    .unwrap();
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    // benches/symbol_order.py reads the addresses of the functions of
    // this very build (the names' hashes follow the profile) from a link
    // map.
    println!("cargo:rerun-if-env-changed=KLIPPER_MCU_LINK_MAP");
    if let Some(map) = env::var_os("KLIPPER_MCU_LINK_MAP") {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--no-demangle,-Map={}",
            PathBuf::from(map).display()
        );
    }
}

/// Packs the relative relocations (DT_RELR, `-z pack-relative-relocs`):
/// the loader reads about 1 KB at start-up instead of a 40 KB table, which
/// then stays resident. Only when rustc links with rust-lld for the
/// machine it runs on (as for the symbol order) and that machine's glibc
/// is 2.36 or newer: the binary needs that glibc to start, and a native
/// build runs where it was built.
fn packed_relocations(target: &str, host: &str) {
    if target != host || !links_with_rust_lld(target) {
        return;
    }
    // "glibc 2.36"
    if version_of("getconf", "GNU_LIBC_VERSION") >= (2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Major and minor of the version `program arg` prints as its second word
/// ("glibc 2.36", "rustc 1.95.0 (...)"); (0, 0) if it cannot be run.
fn version_of(program: impl AsRef<std::ffi::OsStr>, arg: &str) -> (u32, u32) {
    let Ok(out) = std::process::Command::new(program).arg(arg).output() else {
        return (0, 0);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0))
}

/// Whether this build of `target` is linked by rustc's own rust-lld: x86_64
/// linux-gnu, no linker configured (RUSTC_LINKER: the Dockerfile's cross
/// and static builds) and none named in the rustflags.
fn links_with_rust_lld(target: &str) -> bool {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    target == "x86_64-unknown-linux-gnu"
        && env::var_os("RUSTC_LINKER").is_none()
        && !flags.contains("linker")
        && rustc_links_with_lld()
}

/// Whether rustc links x86_64 linux-gnu with its own rust-lld by default:
/// from Rust 1.90 on; older ones run the system's GNU ld, which would
/// refuse the option.
fn rustc_links_with_lld() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    version_of(rustc, "--version") >= (1, 90)
}
