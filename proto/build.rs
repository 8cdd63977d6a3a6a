//! Compiles the .proto files with protox (pure Rust): no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["raftmq/v1/broker.proto", "raftmq/v1/raft.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    // Properties are boxed: most messages set none, and a message waiting
    // in a producer's queue stays small.
    tonic_prost_build::configure()
        .bytes(".")
        .boxed(".raftmq.v1.Message.properties")
        .boxed(".raftmq.v1.Delivery.properties")
        .compile_fds(descriptors)?;
    Ok(())
}
