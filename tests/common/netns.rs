//! A Linux network namespace that can reach exactly one TCP port, for leak tests.
//!
//! Layout (all namespace-local; nothing is routed off the machine):
//! * a veth pair: host end `10.200.X.1/30`, namespace end `10.200.X.2/30`;
//! * a default route inside the namespace through a second veth pair whose both ends stay
//!   inside it, so off-link packets reach netfilter (without a default route they would
//!   fail with ENETUNREACH before netfilter and not be counted) and then go nowhere;
//! * iptables `OUTPUT` inside the namespace: ACCEPT only TCP to `10.200.X.1:<allowed port>`
//!   (plus the REJECT rules' own answers to the namespace's address over `lo`, and the
//!   namespace's own `127.0.0.0/8` on `lo`, which reaches nothing outside it), then LOG and
//!   REJECT everything else, DNS included; IPv6 is disabled in the namespace;
//! * `/etc/netns/<name>/resolv.conf` names 192.0.2.53 (TEST-NET-1), so a stray DNS query is
//!   an off-link UDP packet that the rules count and reject.
//!
//! Needs root, `ip` (iproute2) and `iptables`. Dropping the value deletes the namespace (the
//! veth pairs go with it) and the resolv.conf override.

use std::process::Command;

use tokio::net::TcpListener;

/// Whether we can build namespaces (root, `ip`, `iptables`).
pub fn available() -> Result<(), String> {
    // The effective uid, without unsafe code (`id -u`).
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("the leak tests need root (network namespaces, iptables)".into());
    }
    for bin in ["ip", "iptables"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!("{bin} is not installed (iproute2 / iptables)"));
        }
    }
    Ok(())
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One namespace with its host-side listener address.
pub struct Netns {
    /// The namespace name (for `ip netns exec`).
    pub name: String,
    /// The host end's address, reachable from inside.
    pub host_ip: String,
    /// The one TCP port on `host_ip` the namespace may reach.
    pub allowed_port: u16,
}

impl Netns {
    /// Create a namespace whose only allowed destination is `host_ip:allowed_port`, where
    /// `listener` (bound by this function on the host end) accepts.
    pub async fn create(tag: u8) -> (Netns, TcpListener) {
        let pid = std::process::id();
        let octet = ((pid % 200) as u8).wrapping_add(tag) % 250 + 1;
        let name = format!("mt-leak-{pid}-{tag}");
        let (host_if, ns_if) = (format!("mth{pid}{tag}"), format!("mtn{pid}{tag}"));
        let (blk_a, blk_b) = ("mtblk0", "mtblk1");
        let host_ip = format!("10.200.{octet}.1");
        let ns_ip = format!("10.200.{octet}.2");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        run(&["ip", "netns", "add", &name]);
        let mut ns = Netns {
            name: name.clone(),
            host_ip: host_ip.clone(),
            allowed_port: 0,
        };
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        run(&["ip", "link", "set", &ns_if, "netns", &name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", name.as_str()];
            v.extend_from_slice(args);
            run(&v);
        };
        inside(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        inside(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        inside(&["ip", "link", "set", "lo", "up"]);
        inside(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        inside(&["ip", "link", "set", &ns_if, "up"]);
        inside(&[
            "ip", "link", "add", blk_a, "type", "veth", "peer", "name", blk_b,
        ]);
        inside(&["ip", "link", "set", blk_a, "up"]);
        inside(&["ip", "link", "set", blk_b, "up"]);
        inside(&["ip", "route", "add", "default", "dev", blk_a]);

        let listener = TcpListener::bind((host_ip.as_str(), 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let iptables = |rule: String| {
            let mut v = vec!["iptables"];
            v.extend(rule.split(' '));
            inside(&v);
        };
        iptables(format!(
            "-A OUTPUT -p tcp -d {host_ip} --dport {port} -j ACCEPT"
        ));
        // The REJECT rules' own answers (RST / ICMP unreachable to our address) go out
        // through `lo`; let them through so a rejected attempt fails at once.
        iptables(format!("-A OUTPUT -o lo -d {ns_ip} -j ACCEPT"));
        // The namespace's own loopback (a fresh `lo` that reaches nothing outside it):
        // in-process servers such as the torrent engine's SOCKS bridge live there.
        iptables("-A OUTPUT -o lo -d 127.0.0.0/8 -j ACCEPT".into());
        iptables("-A OUTPUT -j LOG --log-prefix mt-leak:".into());
        iptables("-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset".into());
        iptables("-A OUTPUT -j REJECT".into());
        let etc = format!("/etc/netns/{name}");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(format!("{etc}/resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
        ns.allowed_port = listener.local_addr().unwrap().port();
        (ns, listener)
    }

    /// `ip netns exec <name>` followed by `program`, as a tokio command.
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Packets counted by the LOG and REJECT rules so far.
    pub fn leak_counters(&self) -> (u64, u64) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "iptables", "-nvxL", "OUTPUT"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let count = |target: &str| -> u64 {
            text.lines()
                .filter(|l| l.split_whitespace().nth(2) == Some(target))
                .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap())
                .sum()
        };
        (count("LOG"), count("REJECT"))
    }

    /// Packets accepted to the allowed port so far.
    pub fn accepted(&self) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "iptables", "-nvxL", "OUTPUT"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("ACCEPT") && l.contains("dpt:"))
            .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap())
            .sum()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// Relay every connection accepted on `listener` to `127.0.0.1:target_port` (the Tor SOCKS
/// port), until the task is dropped.
pub fn forward(listener: TcpListener, target_port: u16) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if let Ok(mut out) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    })
}
