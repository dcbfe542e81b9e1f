//! Pod networking and names, as a cluster's network plugin and DNS would give them.
//!
//! Each runner owns one Linux bridge in the root network namespace, holding the gateway address
//! of its own /24 (so the test process and an operator beside it reach every Pod directly), and
//! one network namespace per Pod with a veth into that bridge. A Pod keeps its address for as long
//! as the runner lives, across deletions and recreations under the same name.
//!
//! Names: `ip netns exec` bind-mounts the files of `/etc/netns/<netns>/` over `/etc/`, so every
//! Pod gets its own `hosts` (what a headless Service's DNS records would answer) and a
//! `resolv.conf` with no servers, so no name leaks to the machine's DNS.
//!
//! Everything carries the prefix [`PREFIX`] and a tag made of the runner's pid and instance
//! number, so leftovers of runners that died without cleaning up are recognised and removed.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::Ipv4Addr,
    path::Path,
    process::Command,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
};

use anyhow::{Context, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::PodKey;

/// Prefix of every bridge, veth, network namespace and `/etc/netns` folder of pod runners.
const PREFIX: &str = "bpr";
/// Pod subnets are `10.244.<n>.0/24`, one per runner.
const SUBNET: [u8; 2] = [10, 244];
/// The Service DNS domain of the cluster.
const CLUSTER_DOMAIN: &str = "cluster.local";
/// Where `ip netns exec` takes a network namespace's own `/etc` files from.
const NETNS_ETC: &str = "/etc/netns";
/// Digits of a runner's pid in its tag (base 36; pids stay below 2^22).
const PID_DIGITS: usize = 5;

/// Runners started so far by this process, to tell apart several runners of one test binary.
static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// The network of one pod runner.
pub(super) struct Network {
    tag: String,
    bridge: String,
    subnet: u8,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Set when the runner stops: no namespace may be created after its cleanup.
    closed: bool,
    /// The host part of each Pod's address, kept for the runner's life.
    hosts: HashMap<PodKey, u8>,
    /// Pods that have a network namespace now.
    attached: BTreeMap<PodKey, Attached>,
}

struct Attached {
    netns: String,
    ip: Ipv4Addr,
    /// Names the Pod's own address answers to in its own hosts file.
    own_names: Vec<String>,
    /// Names every other Pod resolves to this one (a headless Service's records).
    service_names: Vec<String>,
}

impl Network {
    /// Removes leftovers of dead runners and creates this runner's bridge.
    pub(super) fn create() -> anyhow::Result<Self> {
        let pid = std::process::id();
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{}", base36(pid, PID_DIGITS), base36(instance % 36, 1));
        sweep(|other| other == tag || !pid_alive(other))?;
        let subnet = free_subnet(pid.wrapping_mul(37).wrapping_add(instance))?;
        let network = Self { bridge: format!("{PREFIX}{tag}"), tag, subnet, state: Mutex::default() };
        let gateway = format!("{}/24", network.gateway());
        ip(&["link", "add", &network.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &gateway, "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        Ok(network)
    }

    /// The bridge's address in the root network namespace: the Pods' default route and their
    /// node's address.
    pub(super) fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], self.subnet, 1)
    }

    /// The Pod's address while it has a network namespace.
    pub(super) fn address(&self, key: &PodKey) -> Option<Ipv4Addr> {
        self.lock().attached.get(key).map(|attached| attached.ip)
    }

    /// Creates the Pod's network namespace and publishes its names to every Pod; returns the
    /// namespace's name and the Pod's address. `hostname` and `subdomain` are the Pod's
    /// `spec.hostname` and `spec.subdomain`.
    pub(super) fn attach(
        &self,
        key: &PodKey,
        hostname: Option<&str>,
        subdomain: Option<&str>,
    ) -> anyhow::Result<(String, Ipv4Addr)> {
        let mut state = self.lock();
        if state.closed {
            bail!("the pod runner is stopping");
        }
        let host = match state.hosts.get(key) {
            Some(&host) => host,
            None => {
                // .0 is the network, .1 the gateway, .255 broadcast.
                let host = u8::try_from(state.hosts.len() + 2)
                    .ok()
                    .filter(|&host| host < 255)
                    .context("the pod runner's /24 has no address left")?;
                state.hosts.insert(key.clone(), host);
                host
            }
        };
        let address = Ipv4Addr::new(SUBNET[0], SUBNET[1], self.subnet, host);
        let netns = format!("{PREFIX}{}-{host}", self.tag);
        let veth = format!("{PREFIX}{}{host:02x}", self.tag);
        // Leftovers of a failed teardown of this Pod would make the steps below fail.
        remove_netns(&netns);
        let _ = ip(&["link", "delete", &veth]);
        let cidr = format!("{address}/24");
        let gateway = self.gateway().to_string();
        // The MAC follows from the address (as Docker's do), so neighbour caches that still hold
        // the address of a Pod's predecessor stay right; a new MAC would leave them pointing
        // nowhere for half a minute.
        let [a, b, c, d] = address.octets();
        let mac = format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}");
        let steps: [&[&str]; 9] = [
            &["netns", "add", &netns],
            &["-n", &netns, "link", "set", "lo", "up"],
            &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns],
            &["-n", &netns, "link", "set", "eth0", "address", &mac],
            &["link", "set", &veth, "master", &self.bridge],
            &["link", "set", &veth, "up"],
            &["-n", &netns, "addr", "add", &cidr, "dev", "eth0"],
            &["-n", &netns, "link", "set", "eth0", "up"],
            &["-n", &netns, "route", "add", "default", "via", &gateway],
        ];
        let created = steps.iter().try_for_each(|args| ip(args).map(drop)).and_then(|()| {
            let etc = Path::new(NETNS_ETC).join(&netns);
            std::fs::create_dir_all(&etc)?;
            // No servers: glibc then asks 127.0.0.1 of the Pod's own namespace, which refuses.
            std::fs::write(
                etc.join("resolv.conf"),
                "# pod runner: Pod names come from /etc/hosts only\noptions timeout:1 attempts:1\n",
            )?;
            Ok(())
        });
        if let Err(error) = created {
            remove_netns(&netns);
            return Err(error.context(format!("creating network namespace {netns} for {key}")));
        }
        let service_names = match (hostname, subdomain) {
            (Some(hostname), Some(subdomain)) => {
                let short = format!("{hostname}.{subdomain}");
                let namespaced = format!("{short}.{}", key.namespace);
                vec![format!("{namespaced}.svc.{CLUSTER_DOMAIN}"), format!("{namespaced}.svc"), namespaced, short]
            }
            _ => Vec::new(),
        };
        let mut own_names = service_names.clone();
        own_names.push(hostname.unwrap_or(&key.name).to_owned());
        state.attached.insert(key.clone(), Attached { netns: netns.clone(), ip: address, own_names, service_names });
        write_hosts_files(&state.attached)?;
        Ok((netns, address))
    }

    /// Removes the Pod's network namespace (its processes must have stopped) and its names.
    pub(super) fn detach(&self, key: &PodKey) -> anyhow::Result<()> {
        let mut state = self.lock();
        if let Some(attached) = state.attached.remove(key) {
            remove_netns(&attached.netns);
            write_hosts_files(&state.attached)?;
        }
        Ok(())
    }

    /// Removes everything of this runner, killing whatever still runs in its Pods' namespaces.
    /// Nothing can be attached afterwards.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.attached.clear();
        if let Err(error) = sweep(|tag| tag == self.tag) {
            eprintln!("pod runner: removing network {}: {error:#}", self.bridge);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Rewrites every attached Pod's hosts file in place: a running process sees it through a bind
/// mount of that very inode, so replacing the file (write and rename) would hide the change.
/// glibc reads /etc/hosts afresh on every lookup.
fn write_hosts_files(attached: &BTreeMap<PodKey, Attached>) -> anyhow::Result<()> {
    for (key, pod) in attached {
        let mut hosts = String::from(
            "# pod runner: this Pod, then every Pod of a headless Service\n\
             127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        );
        hosts.push_str(&format!("{}\t{}\n", pod.ip, pod.own_names.join(" ")));
        for (other_key, other) in attached {
            if other_key != key && !other.service_names.is_empty() {
                hosts.push_str(&format!("{}\t{}\n", other.ip, other.service_names.join(" ")));
            }
        }
        let path = Path::new(NETNS_ETC).join(&pod.netns).join("hosts");
        // fs::write truncates the existing file rather than replacing it.
        std::fs::write(&path, hosts).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Removes a network namespace (which takes its veth pair along) and its `/etc/netns` folder,
/// killing any process left in it. Best effort: it may not exist.
fn remove_netns(netns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", netns]) {
        for pid in pids.split_whitespace().filter_map(|pid| pid.parse().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = ip(&["netns", "delete", netns]);
    let _ = std::fs::remove_dir_all(Path::new(NETNS_ETC).join(netns));
}

/// Removes every network namespace, `/etc/netns` folder and link (bridge or veth) of the pod
/// runners whose tag `doomed` picks.
fn sweep(doomed: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    let netns_list = ip(&["netns", "list"])?;
    let mut namespaces: HashSet<String> =
        netns_list.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect();
    if let Ok(entries) = std::fs::read_dir(NETNS_ETC) {
        namespaces.extend(entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()));
    }
    for netns in namespaces.iter().filter(|name| tag_of(name).is_some_and(&doomed)) {
        remove_netns(netns);
    }
    // Links look like "7: bpr00abc0: <BROADCAST,..." or "8: bpr00abc002@if3: <...".
    let links = ip(&["-o", "link", "show"])?;
    for link in
        links.lines().filter_map(|line| line.split(": ").nth(1)).map(|name| name.split('@').next().unwrap_or(name))
    {
        if tag_of(link).is_some_and(&doomed) {
            let _ = ip(&["link", "delete", link]);
        }
    }
    Ok(())
}

/// The runner tag in the name of one of its bridges, veths or namespaces.
fn tag_of(name: &str) -> Option<&str> {
    name.strip_prefix(PREFIX)?.get(..PID_DIGITS + 1)
}

/// Whether the runner that owns `tag` may still be alive.
fn pid_alive(tag: &str) -> bool {
    match tag.get(..PID_DIGITS).and_then(|pid| u32::from_str_radix(pid, 36).ok()) {
        Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        // Not one of ours after all.
        None => true,
    }
}

/// A /24 under [`SUBNET`] no address or route of this machine uses, searched from `start`.
fn free_subnet(start: u32) -> anyhow::Result<u8> {
    let mut used = HashSet::new();
    for listing in [ip(&["-o", "-4", "addr", "show"])?, ip(&["-4", "route", "show", "table", "all"])?] {
        for word in listing.split_whitespace() {
            let address = word.split('/').next().and_then(|address| address.parse::<Ipv4Addr>().ok());
            if let Some([a, b, c, _]) = address.map(|address| address.octets())
                && [a, b] == SUBNET
            {
                used.insert(c);
            }
        }
    }
    (0..=255u32)
        .filter_map(|offset| u8::try_from((start.wrapping_add(offset)) % 256).ok())
        .find(|subnet| !used.contains(subnet))
        .with_context(|| format!("every /24 of {}.{}.0.0/16 is in use", SUBNET[0], SUBNET[1]))
}

/// `n` in base 36, zero-padded to `width` digits.
fn base36(mut n: u32, width: usize) -> String {
    let mut digits = Vec::new();
    while n > 0 || digits.len() < width {
        digits.push(std::char::from_digit(n % 36, 36).unwrap_or('0'));
        n /= 36;
    }
    digits.iter().rev().collect()
}

/// Runs `ip args...` and returns its stdout.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip").args(args).output().context("running ip (scripts/setup.sh installs iproute2)")?;
    if !output.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_the_pid() {
        let tag = format!("{}{}", base36(4_194_303, PID_DIGITS), base36(35, 1));
        assert_eq!(tag.len(), PID_DIGITS + 1);
        assert_eq!(tag_of(&format!("{PREFIX}{tag}-17")), Some(tag.as_str()));
        assert_eq!(tag.get(..PID_DIGITS).and_then(|pid| u32::from_str_radix(pid, 36).ok()), Some(4_194_303));
        assert_eq!(tag_of("eth0"), None);
        assert_eq!(tag_of("bpr12"), None);
    }
}
