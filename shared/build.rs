//! Build script of the core library: compiles it again when a migration is added.
//!
//! `refinery::embed_migrations!` lists `migrations/` while the library compiles, but cargo
//! only learns of the files the compiler reported reading: a new migration, with no Rust
//! file changed, would leave the library fresh and the binaries without the migration.
//! Watching the folder makes any file added to it, or changed in it, a reason to rebuild.
fn main() {
    println!("cargo::rerun-if-changed=../migrations");
}
