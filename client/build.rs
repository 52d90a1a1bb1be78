//! The operations are generated from `schema.graphql` and `graphql/*.graphql`
//! at compile time: a change to either must rebuild this crate.

fn main() {
    println!("cargo:rerun-if-changed=../schema.graphql");
    println!("cargo:rerun-if-changed=graphql");
}
