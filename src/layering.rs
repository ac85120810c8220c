//! The dependency rule, checked: modules depend downward only. The test
//! reads every source file, collects the top-level modules each one names
//! (`crate::X`, in `use` lines or inline paths), and fails on any import
//! circle between top-level modules and on an import against the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> top-level modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, top: Option<&str>, g: &mut BTreeMap<String, BTreeSet<String>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_str().unwrap().to_string();
            if p.is_dir() {
                walk(&p, Some(top.unwrap_or(&name)), g);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let module = top.unwrap_or(&name).to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let deps = g.entry(module.clone()).or_default();
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                let code = line.split("//").next().unwrap_or("");
                for part in code.split("crate::").skip(1) {
                    let dep: String = part
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !dep.is_empty() && dep != module {
                        deps.insert(dep);
                    }
                }
            }
        }
    }
    let mut g = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        None,
        &mut g,
    );
    g
}

/// A circle through `start`, if any.
fn circle(g: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn dfs(
        g: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for d in g.get(at).into_iter().flatten() {
            if d == start {
                path.push(d.clone());
                return true;
            }
            if seen.insert(d.clone()) {
                path.push(d.clone());
                if dfs(g, start, d, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    dfs(g, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let g = graph();
    assert!(g.len() > 10, "{g:?}");
    for m in g.keys() {
        if let Some(c) = circle(&g, m) {
            panic!("import circle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn layers_point_down() {
    let g = graph();
    let uses = |m: &str, d: &str| g.get(m).is_some_and(|s| s.contains(d));
    assert!(g["shutdown"].is_empty(), "the leaf imports nothing");
    // Below the MCU: declarations, registry, clock, scheduler, move queue,
    // oid table, hardware.
    for low in [
        "command", "clock", "sched", "moveq", "objects", "hw", "pins", "restart", "pages",
    ] {
        for high in ["mcu", "commands", "runtime", "console"] {
            assert!(!uses(low, high), "{low} must not import {high}");
        }
    }
    // The MCU knows no family; only the composition root lists them.
    assert!(!uses("mcu", "commands"));
    assert!(!uses("commands", "runtime"));
}

#[test]
fn the_check_sees_a_circle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(circle(&g, "a").unwrap(), ["a", "b", "a"]);
}
