//! A TCP proxy that can cut the network: between cairn and PostgreSQL, `cut(true)` drops
//! every connection through it and refuses new ones until `cut(false)`. The HTTP fault
//! proxy (faultproxy.rs) works on requests; PostgreSQL's protocol needs bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub port: u16,
    cut: Arc<watch::Sender<bool>>,
}

impl TcpProxy {
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("bound").port();
        let cut = Arc::new(watch::channel(false).0);
        let cut_rx = cut.subscribe();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let mut cut = cut_rx.clone();
                    if *cut.borrow() {
                        continue; // dropped: refused while cut
                    }
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.wait_for(|c| *c) => {}
                        }
                    });
                }
            });
        });
        TcpProxy { port, cut }
    }

    /// Cuts (true) or restores (false) the network through the proxy.
    pub fn cut(&self, on: bool) {
        self.cut.send_replace(on);
    }
}
