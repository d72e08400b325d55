//! Where the daemons may send requests whose URLs came from the network. The agent: OAuth
//! metadata, registration, token, revocation and authorization endpoints, a challenge's
//! `resource_metadata`, consent pages; the bridge: a connector's client metadata document. A
//! hostile server or client could otherwise point them at this machine or its private network
//! (SSRF): a router's admin page, a cloud metadata service, another local daemon.
//!
//! URLs are refused when their host is, or resolves to, a loopback, private, link-local,
//! shared (CGNAT), multicast, reserved or otherwise non-global address, unless the upstream's
//! config allows it (`allow_local_oauth = true` for a self-hosted authorization server on the
//! LAN, and the tests, which run everything on loopback). The URL the user configured is never
//! checked: the user chose it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// Whether `ip` is an address on the public internet (not this machine, not a private or
/// link-local network, not reserved). IPv4 inside IPv6 (mapped, compatible, NAT64, 6to4) is
/// judged by the IPv4 address it carries.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network", 0.0.0.0
        || a == 10                             // private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)              // link-local, cloud metadata services
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 168)              // private
        || (a == 198 && (b == 18 || b == 19))  // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    // IPv4-compatible (deprecated, ::a.b.c.d), which also covers :: and ::1.
    if s[..6].iter().all(|&x| x == 0) {
        return false;
    }
    // NAT64 well-known prefix 64:ff9b::/96 carries an IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_global_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // 6to4 2002::/16 carries an IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return is_global_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    !((s[0] & 0xfe00) == 0xfc00                  // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80             // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0             // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00             // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
}

/// Refuses `url` unless its host is global. Host names are resolved (with the system
/// resolver) and refused if any address is not global. `allow_local` skips the check;
/// `setting` names what allows it, for the message.
pub async fn check_url(url: &str, allow_local: bool, setting: &str) -> Result<(), String> {
    if allow_local {
        return Ok(());
    }
    let parsed = Url::parse(url).map_err(|e| format!("bad URL {url}: {e}"))?;
    let refuse = |addr: IpAddr| {
        format!(
            "refused {url}: it points at {addr}, a local or private address; the network named it, not you (set {setting} if that server is yours)"
        )
    };
    let host = match parsed.host() {
        Some(url::Host::Ipv4(a)) => return is_global_v4(a).then_some(()).ok_or(refuse(a.into())),
        Some(url::Host::Ipv6(a)) => return is_global_v6(a).then_some(()).ok_or(refuse(a.into())),
        Some(url::Host::Domain(d)) => d.to_owned(),
        None => return Err(format!("refused {url}: it has no host")),
    };
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return Err(refuse(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for a in addrs {
        if !is_global(a.ip()) {
            return Err(refuse(a.ip()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn local_private_and_reserved_addresses_are_not_global() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.2.5",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            // IPv4 inside IPv6.
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
        ] {
            assert!(!is_global(ip(a)), "{a} must not count as global");
        }
    }

    #[test]
    fn public_addresses_are_global() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "169.255.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_global(ip(a)), "{a} is public");
        }
    }

    #[tokio::test]
    async fn urls_naming_local_hosts_are_refused_without_any_traffic() {
        for u in [
            "http://127.0.0.1:9/token",
            "http://[::1]/x",
            "http://[::ffff:7f00:1]/x",
            "https://169.254.169.254/latest/meta-data",
            "http://localhost:8080/.well-known/oauth-authorization-server",
            "http://api.localhost/x",
            "http://10.0.0.1/register",
        ] {
            let e = check_url(u, false, "x").await.unwrap_err();
            assert!(e.contains("refused"), "{u}: {e}");
        }
        assert!(
            check_url("http://127.0.0.1:9/token", true, "x")
                .await
                .is_ok()
        );
        assert!(
            check_url("https://93.184.216.34/token", false, "x")
                .await
                .is_ok()
        );
    }
}
