//! A TCP relay in front of a server that can make the connections it carries go silently
//! dead, as a failover behind a proxy or VIP, or a partition, leaves them: no FIN, no RST,
//! bytes accepted and never answered. Connections made afterwards pass normally.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Blackhole {
    pub port: u16,
    /// One flag per connection carried so far: set, its bytes go nowhere.
    dead: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Blackhole {
    /// Relays 127.0.0.1:<free port> to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dead: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (list, count) = (dead.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let flag = Arc::new(AtomicBool::new(false));
                list.lock().unwrap().push(flag.clone());
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, flag.clone()));
                tokio::spawn(pipe(server_read, client_write, flag));
            }
        });
        Blackhole {
            port,
            dead,
            accepted,
            task,
        }
    }

    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Every connection carried so far goes silently dead; both ends stay open.
    pub fn cut_existing(&self) {
        for flag in self.dead.lock().unwrap().iter() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies until either side closes; once `dead`, reads and drops, keeping the sender's
/// window open as a peer that still ACKs but never answers would.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dead: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if dead.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
