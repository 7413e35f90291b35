//! A real `redis-server` on a port of the test's choosing, killed on drop.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_redis(port: u16) -> Redis {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Redis(child)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Spin runtime config file pointing the `default` store at Redis.
pub fn runtime_config(port: u16) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("spindle-rc-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rc = dir.join("runtime-config.toml");
    std::fs::write(&rc, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\n"))
        .unwrap();
    rc
}
