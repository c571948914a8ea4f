fn main() {
    println!("cargo:rerun-if-changed=proto/freshet.proto");
    // Record payloads as `Bytes`: a record decoded from a request is shared, not copied, on
    // its way to the shard leader, and a record read from the log cache is sent as is.
    tonic_prost_build::configure()
        .bytes(".freshet.v1.PutRecordsEntry.data")
        .bytes(".freshet.v1.Record.data")
        .compile_protos(&["proto/freshet.proto"], &["proto"])
        .expect("compile proto/freshet.proto (is protoc installed? run `make deps`)");
}
