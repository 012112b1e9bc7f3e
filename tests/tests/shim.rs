//! hyper-shim end to end: a real VM under QEMU, the agent in it, containers from a busybox
//! rootfs. Driven over the shim's gRPC socket with no hyperd (the shim is its own product
//! boundary).

use std::time::Duration;

use hyper_proto::shim::{ContainerRef, ShutdownRequest, VmState};
use hyper_proto::types::{ExecRequest, ProcessRef};
use hyper_tests::*;

#[tokio::test]
async fn echo_hello_in_a_container() {
    let mut shim = ShimHandle::start("echo").await;
    let info = shim.boot().await;
    assert_eq!(info.state, VmState::Running as i32);
    assert_eq!(info.vmm, "qemu");
    let rootfs = busybox_rootfs(shim.dir.path());
    let out = run_container(&mut shim.client, "c1", &rootfs, process(&["echo", "hello"])).await;
    assert_eq!(out.stdout, "hello\n");
    assert_eq!(out.stderr, "");
    assert_eq!(out.exit_code, 0);
}
