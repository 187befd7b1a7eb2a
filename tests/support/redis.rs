//! Redis: a real `redis-server` on a free port.

use super::components::ensure_installed;
use std::time::Duration;

/// A real `redis-server` on a free loopback port, stopped on drop. A missing server fails
/// the test under `CI=true`; elsewhere [`RedisServer::start`] returns `None` after printing
/// why, and the caller skips.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn start() -> Option<RedisServer> {
        if !ensure_installed("redis-server", "redis-server") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer { port, child: None };
        server.resume();
        Some(server)
    }

    pub fn url(&self) -> String {
        self.url_db(0)
    }

    /// The URL of database `db` of this server.
    pub fn url_db(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Runs one command on database `db`, as any other client of the server could.
    pub async fn command<T: ::redis::FromRedisValue>(&self, db: u32, command: &::redis::Cmd) -> T {
        let client = ::redis::Client::open(self.url_db(db)).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        command.query_async(&mut connection).await.unwrap()
    }

    /// Stops the server (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn resume(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server did not start");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
