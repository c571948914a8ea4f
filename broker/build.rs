fn main() {
    println!("cargo:rerun-if-changed=proto/freshet.proto");
    tonic_prost_build::compile_protos("proto/freshet.proto")
        .expect("compile proto/freshet.proto (is protoc installed? run `make deps`)");
}
