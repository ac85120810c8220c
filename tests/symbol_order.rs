//! The linker's symbol order (`link/x86_64-unknown-linux-gnu.order`, see
//! build.rs) names functions by their mangled names, whose hashes change
//! with rustc, the dependencies and the profile. A stale list does not
//! break the link: the order silently stops applying and an idle MCU's
//! resident text grows back (last seen: 124-188 KB with a fresh list,
//! 316 KB with a stale one, mcubench `idle`, warm page cache). This test
//! links the release binary as `cargo build --release` does, with a link
//! map, and fails when the list no longer fits it.

mod hosttools;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::process::Command;

use hosttools::{output_of, repo};

#[test]
fn symbol_order_names_the_functions_of_the_release_build() {
    if !cfg!(all(
        target_arch = "x86_64",
        target_os = "linux",
        target_env = "gnu"
    )) {
        eprintln!("symbol order: only x86_64 linux-gnu builds use one");
        return;
    }
    let list = repo().join("link/x86_64-unknown-linux-gnu.order");
    let names: Vec<String> = fs::read_to_string(&list)
        .unwrap_or_else(|e| panic!("{}: {e}", list.display()))
        .lines()
        .map(str::to_owned)
        .collect();
    // Its own target directory (the outer cargo holds the lock on ours);
    // the same profile and flags as `cargo build --release`, so the same
    // names.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("symbol-order");
    // A new name each run: build.rs watches the variable, so cargo links
    // again and the linker writes the map.
    let map = dir.join(format!("link-{}.map", std::process::id()));
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = output_of(
        Command::new(cargo)
            .current_dir(repo())
            .args(["build", "--release", "--target-dir"])
            .arg(&dir)
            .env("KLIPPER_MCU_LINK_MAP", &map)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS"),
        "cargo build --release",
    )
    .unwrap();
    assert!(
        out.status.success(),
        "cargo build --release failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&map);
    let _ = fs::remove_file(&map);
    let Ok(text) = text else {
        // build.rs passes the list (and the map) only to rust-lld, the
        // linker rustc 1.90 and later use here by default.
        assert!(
            !rustc_links_with_lld(),
            "rustc links with rust-lld, yet build.rs passed no symbol order"
        );
        eprintln!("symbol order: rustc before 1.90 links with GNU ld, the list is not used");
        return;
    };
    // A map line ends with the symbol's name.
    let linked: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    // The list also holds the static build's names (other hashes, see
    // benches/symbol_order.py): a function counts as found when any of
    // its names is linked.
    let mut functions: HashMap<&str, bool> = HashMap::new();
    for n in &names {
        *functions.entry(unhashed(n)).or_default() |= linked.contains(n.as_str());
    }
    let missing: Vec<&str> = functions
        .iter()
        .filter(|(_, &found)| !found)
        .map(|(n, _)| *n)
        .collect();
    // A few names may go with an ordinary code change (a function inlined
    // away); most gone means new hashes.
    assert!(
        missing.len() * 10 <= functions.len(),
        "{} of the {} functions in {} are not in the release build (stale \
         after a rustc, dependency or profile change): run \
         benches/symbol_order.py and commit the new list. First missing: {:?}",
        missing.len(),
        functions.len(),
        list.display(),
        &missing[..missing.len().min(5)]
    );
}

/// rustc 1.90 or later (its default linker on x86_64 linux-gnu is rust-lld).
fn rustc_links_with_lld() -> bool {
    let out = output_of(Command::new("rustc").arg("--version"), "rustc --version").unwrap();
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Vec<u32> = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    (v.first().copied(), v.get(1).copied()) >= (Some(1), Some(90))
}

/// A legacy-mangled name without its hash (`17h` and 16 hex digits, `E`).
fn unhashed(name: &str) -> &str {
    let b = name.as_bytes();
    let n = b.len();
    if n > 20
        && name.ends_with('E')
        && &name[n - 20..n - 17] == "17h"
        && b[n - 17..n - 1].iter().all(u8::is_ascii_hexdigit)
    {
        &name[..n - 20]
    } else {
        name
    }
}
