//! Build script of the core library: copies into `OUT_DIR` the files the library embeds from
//! outside its own folder (the migrations and the checked-in OpenAPI document), and writes
//! the list of migrations that `db/migrations.rs` includes.
//!
//! Why copies: cargo remembers a file that a crate read from outside the crate's folder by
//! its absolute path, so another clone sharing the build cache would find that path gone and
//! compile the library again (docs/testing.md, "One build cache for every clone"). Files in
//! `OUT_DIR` are remembered relative to the cache, and the paths below relative to the crate.

use std::path::Path;
use std::{env, fs, io};

fn main() -> io::Result<()> {
    println!("cargo::rerun-if-changed=../migrations");
    println!("cargo::rerun-if-changed=../openapi.json");
    let out_dir = env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR is not set"))?;
    let out = Path::new(&out_dir);

    copy_if_changed(Path::new("../openapi.json"), &out.join("openapi.json"))?;

    let mut migrations = Vec::new();
    for entry in fs::read_dir("../migrations")? {
        let name = entry?.file_name().into_string().map_err(|name| {
            io::Error::other(format!("migrations/{name:?}: not a UTF-8 file name"))
        })?;
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        migrations.push((version(stem)?, stem.to_owned()));
    }
    migrations.sort();
    fs::create_dir_all(out.join("migrations"))?;
    let mut list = String::from("&[\n");
    for (_, stem) in &migrations {
        let file = format!("{stem}.sql");
        copy_if_changed(
            &Path::new("../migrations").join(&file),
            &out.join("migrations").join(&file),
        )?;
        list.push_str(&format!(
            "    ({stem:?}, include_str!(concat!(env!(\"OUT_DIR\"), \"/migrations/{file}\"))),\n"
        ));
    }
    list.push_str("]\n");
    write_if_changed(&out.join("migrations.rs"), list.as_bytes())
}

/// The version of a migration named `V<version>__<name>`.
fn version(stem: &str) -> io::Result<u32> {
    stem.strip_prefix('V')
        .and_then(|rest| rest.split_once("__"))
        .and_then(|(number, _)| number.parse().ok())
        .ok_or_else(|| io::Error::other(format!("migrations/{stem}.sql: not V<version>__<name>")))
}

fn copy_if_changed(from: &Path, to: &Path) -> io::Result<()> {
    write_if_changed(to, &fs::read(from)?)
}

/// Writes only when the content differs: an unchanged file keeps its time, so the library
/// is not compiled again for nothing when this script runs again.
fn write_if_changed(path: &Path, content: &[u8]) -> io::Result<()> {
    if fs::read(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    fs::write(path, content)
}
