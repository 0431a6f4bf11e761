//! What the etcd test files share: free loopback ports and a guard that kills and reaps
//! an `etcd` process when the test ends, also when it fails.

use std::net::TcpListener;
use std::process::Child;

/// An `etcd` process, killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on now (the listener is closed before it returns).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
