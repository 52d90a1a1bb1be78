//! Where the binaries under test are: `target/<profile>/`, the directory above
//! the test executable's `deps/`.

use std::path::PathBuf;

/// The path of the built binary `name` (`slipway-api`, ...); panics with how to
/// build it when it is missing.
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("the executable's directory").to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run cargo build --workspace --bins{} first",
        bin.display(),
        if dir.ends_with("release") {
            " --release"
        } else {
            ""
        }
    );
    bin
}
