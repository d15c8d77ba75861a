//! Link options of the `kiln` executable (the master; `kiln-worker`, built by the worker crate, keeps the default
//! so that it runs on older systems too).
//!
//! On glibc ≥ 2.36 (native builds) the executable is linked with `-z pack-relative-relocs`: its relative
//! relocations go in a compact `DT_RELR` table (~25 KB) instead of `.rela.dyn` (~1.5 MB), which the dynamic
//! loader reads whole at every start, so it stayed resident (about 1.5 MiB of each process's RSS). The
//! executable then requires glibc's `GLIBC_ABI_DT_RELR` version, which an older loader refuses with a clear
//! error. Cross builds and older or other C libraries keep the default.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    if native && var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && glibc_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (`getconf GNU_LIBC_VERSION`: `glibc 2.36`) loads `DT_RELR` (2.36 and later).
fn glibc_has_relr() -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else { return false };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}
