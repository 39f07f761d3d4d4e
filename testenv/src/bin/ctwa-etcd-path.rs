//! Prints the path of the etcd binary shipped by the crates.io crate etcd-bin-vendored, so that
//! scripts/control-plane.sh can start it without a system package.
#![forbid(unsafe_code)]

fn main() {
    match etcd_bin_vendored::etcd_bin_path() {
        Ok(path) => println!("{}", path.display()),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
