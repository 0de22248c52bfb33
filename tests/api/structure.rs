//! The shape of the core library: imports point one way, down this list of layers.
//!
//! 0. leaves: `domain`, `config`, and small utilities (`expiring`, `telemetry`, `tls`),
//!    which name no other module of the crate (beyond themselves);
//! 1. infrastructure: storage, tokens, limits, mail, audit, ...;
//! 2. `services`: the use cases;
//! 3. `http`: routes, extractors, the error mapping, the state type;
//! 4. `app`, `lambda`, `check` and the binary: wiring.
//!
//! A module may name its own layer and the layers below it, never one above. The check
//! reads the source as text (no build needed): every `crate::<module>` outside comments.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::docs::workspace_root;

/// The layer of each top-level module of `shared/src`.
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "domain" | "config" | "expiring" | "telemetry" | "tls" => 0,
        "db" | "redis_store" | "secrets" | "auth" | "limits" | "mail" | "audit" | "profiles"
        | "rotation" | "custom_resource" => 1,
        "services" => 2,
        "http" => 3,
        "app" | "lambda" | "check" | "main" | "lib" => 4,
        _ => return None,
    })
}

fn source_root() -> PathBuf {
    // The core library is the workspace's `shared` member.
    workspace_root().join("shared").join("src")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file belongs to (`http/routes/login.rs` → `http`).
fn module_of(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).expect("under the root");
    let first = relative
        .components()
        .next()
        .expect("a component")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The modules a source text names as `crate::<module>`, comments left out.
fn named_modules(source: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `$crate::` in a macro is the crate's root too.
            if !name.is_empty() {
                named.insert(name);
            }
            rest = after;
        }
    }
    named
}

#[test]
fn imports_point_down_the_layers() {
    let root = source_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 20,
        "found the sources under {}",
        root.display()
    );
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&root, file);
        let own = layer(&module).unwrap_or_else(|| {
            panic!(
                "{}: module `{module}` has no layer; add it to `layer` in tests/api/structure.rs",
                file.display()
            )
        });
        let source = std::fs::read_to_string(file).expect("readable source");
        for named in named_modules(&source) {
            if named == module {
                continue;
            }
            let Some(theirs) = layer(&named) else {
                continue; // an item of lib.rs re-exported at the root, e.g. `crate::Config`
            };
            // Leaves name nothing but themselves; everything else names its layer or below.
            let allowed = if own == 0 { false } else { theirs <= own };
            if !allowed {
                violations.push(format!(
                    "{} (layer {own}) names crate::{named} (layer {theirs})",
                    file.strip_prefix(&root).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that run back up the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_that_runs_back_up() {
    // The scanner itself: a service naming the HTTP layer must be caught, a comment not.
    let named = named_modules("use crate::http::ApiError;\n// crate::app in a comment\n");
    assert_eq!(named, BTreeSet::from(["http".to_owned()]));
    assert!(layer("http") > layer("services"));
}

#[test]
fn every_function_runs_on_one_thread() {
    // Lambda hands a sandbox one invocation at a time: worker threads would only add their
    // start-up and allocator arenas to the cold start and the peak RSS (docs/architecture.md,
    // "How a function runs on Lambda").
    let functions = workspace_root().join("functions");
    let mut multi_threaded = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&functions).expect("functions/ exists") {
        let main = entry.expect("directory entry").path().join("src/main.rs");
        let source = std::fs::read_to_string(&main).expect("every function has a main.rs");
        seen += 1;
        if !source.contains(r#"#[tokio::main(flavor = "current_thread")]"#) {
            multi_threaded.push(main.display().to_string());
        }
    }
    assert!(
        seen > 20,
        "found the functions under {}",
        functions.display()
    );
    assert!(
        multi_threaded.is_empty(),
        "functions not on tokio's current-thread runtime:\n{}",
        multi_threaded.join("\n")
    );
}

#[test]
fn no_code_remembers_the_folder_it_was_compiled_in() {
    // Clones share one build cache and reuse each other's binaries (scripts/source_times.py):
    // a path fixed at compile time would be the path of whichever clone compiled it, so a
    // test would read, or write, another clone's files. `cargo test` sets the variable at
    // run time too: read it there.
    let needle = format!("env!(\"{}\")", "CARGO_MANIFEST_DIR");
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["shared", "functions", "tests", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 100,
        "found the sources under {}",
        root.display()
    );
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| {
            std::fs::read_to_string(file)
                .expect("readable source")
                .contains(&needle)
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "compile-time CARGO_MANIFEST_DIR in:\n{}",
        offenders.join("\n")
    );
}
