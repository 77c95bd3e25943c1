//! The iPXE scripts, as pure functions of configuration and Hardware, byte for byte what
//! upstream Smee renders (smee/internal/ipxe/script: hook.go, static.go, custom.go), so
//! HookOS and any tooling reading the kernel command line see the same contract:
//!
//! `[vlan_id=] facility= syslog_host= grpc_authority= tinkerbell_tls= tinkerbell_insecure_tls=
//! worker_id= hw_addr= [worker_token=] modules=loop,squashfs,sd-mod,usb-storage intel_iommu=on
//! iommu=pt initrd=${initrd} console=tty0 console=ttyS1,115200 <extra args> <osie.kernelParams>`
//!
//! `worker_token=` is our extension (see `tinkerbell_core::worker_token`): present only when a
//! worker token key is configured, placed right after the identity it vouches for. Everything
//! else is in upstream's order; the per-Hardware parameters come last because the kernel
//! command line is last-wins.

use std::fmt::Write as _;

/// Settings common to every script (upstream's `ipxe-http-script-*` and tink server flags).
#[derive(Debug, Clone)]
pub struct ScriptConfig {
    /// Where HookOS's kernel and initrd are (`ipxe-http-script-osie-url`). Empty: the HookOS
    /// directory served by this HTTP server (`http://<Host>/hookos`) when one is configured.
    pub osie_url: String,
    /// Appended to every kernel command line (`ipxe-http-script-extra-kernel-args`).
    pub extra_kernel_args: Vec<String>,
    /// Kernel file name before `-<arch>` (`ipxe-http-script-kernel-name`, default `vmlinuz`).
    pub kernel_name: String,
    /// Initrd file name before `-<arch>` (`ipxe-http-script-initrd-name`, default `initramfs`).
    pub initrd_name: String,
    /// Extra attempts at kernel, initrd and boot (`ipxe-http-script-retries`, default 1).
    pub retries: u32,
    /// Seconds between attempts (`ipxe-http-script-retry-delay`, default 1).
    pub retry_delay: u32,
    /// `grpc_authority`: the tink server (`ipxe-script-tink-server-addr-port`).
    pub tink_server: String,
    /// `tinkerbell_tls` (`ipxe-script-tink-server-use-tls`).
    pub tink_tls: bool,
    /// `tinkerbell_insecure_tls` (`ipxe-script-tink-server-insecure-tls`).
    pub tink_insecure_tls: bool,
    /// `syslog_host`, and iPXE's own syslog target (`dhcp-syslog-ip`). Empty: none, or see
    /// `syslog_local`.
    pub syslog_host: String,
    /// With `tink_server` empty: `grpc_authority` is the host the script request was sent to
    /// with this port (`tinkerbell serve` runs the tink server next to boots).
    pub tink_server_port: Option<u16>,
    /// With `syslog_host` empty: the host the script request was sent to (boots' own syslog
    /// receiver runs in the same process).
    pub syslog_local: bool,
}

impl ScriptConfig {
    /// The settings for one request sent to `host` (the `Host` header without its port):
    /// the tink server and syslog defaults filled in where they depend on it.
    pub fn for_host(&self, host: Option<&str>) -> std::borrow::Cow<'_, ScriptConfig> {
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            return std::borrow::Cow::Borrowed(self);
        };
        let tink = self.tink_server.is_empty() && self.tink_server_port.is_some();
        let syslog = self.syslog_host.is_empty() && self.syslog_local;
        if !tink && !syslog {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut c = self.clone();
        if let (true, Some(port)) = (tink, self.tink_server_port) {
            c.tink_server = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
        }
        if syslog {
            c.syslog_host = host.to_string();
        }
        std::borrow::Cow::Owned(c)
    }
}

impl Default for ScriptConfig {
    fn default() -> Self {
        ScriptConfig {
            osie_url: String::new(),
            extra_kernel_args: Vec::new(),
            kernel_name: "vmlinuz".into(),
            initrd_name: "initramfs".into(),
            retries: 1,
            retry_delay: 1,
            tink_server: String::new(),
            tink_tls: false,
            tink_insecure_tls: false,
            syslog_host: String::new(),
            tink_server_port: None,
            syslog_local: false,
        }
    }
}

/// The per-machine values of the Hook script.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// MAC of the booting interface, lower-case with colons.
    pub mac: String,
    /// `dhcp.arch` (default `x86_64`).
    pub arch: String,
    /// `dhcp.vlan_id`.
    pub vlan_id: String,
    /// `metadata.facility.facility_code`.
    pub facility: String,
    /// `spec.agentID`, or the MAC.
    pub worker_id: String,
    /// The worker's token, when a key is configured.
    pub worker_token: Option<String>,
    /// `netboot.osie.baseURL` (replaces the configured OSIE URL).
    pub osie_base_url: String,
    /// `netboot.osie.kernel` (replaces `<kernel-name>-<arch>`).
    pub kernel: String,
    /// `netboot.osie.initrd` (replaces `<initrd-name>-<arch>`).
    pub initrd: String,
    /// `netboot.osie.kernelParams`, after the global extra arguments.
    pub kernel_params: Vec<String>,
}

const SYSLOG_COMMENT: &str = "# iPXE can only set the syslog server to an IP address, not a hostname (https://ipxe.org/cfg/syslog).\n# If target is an IP, save it directly; if not, resolve it via nslookup directly into the syslog variable.\n";

fn syslog_block(out: &mut String, host: &str) {
    if host.is_empty() {
        return;
    }
    out.push_str(SYSLOG_COMMENT);
    let _ = writeln!(
        out,
        "set check:ipv4 {host} && set syslog {host} || nslookup syslog {host} || echo [WARN] Failed to resolve syslog host {host}"
    );
    out.push_str("clear check\n");
}

/// The retry/boot tail shared by the Hook and static scripts (everything after the kernel line).
const TAIL: &str = " && goto download_initrd || iseq ${idx} ${retries} && goto kernel-error || inc idx && echo retry in ${retry_delay} seconds ; sleep ${retry_delay} ; goto retry_kernel

:download_initrd
set idx:int32 0
:retry_initrd
initrd ${download-url}/${initrd} && goto boot || iseq ${idx} ${retries} && goto initrd-error || inc idx && echo retry in ${retry_delay} seconds ; sleep ${retry_delay} ; goto retry_initrd

:boot
set idx:int32 0
:retry_boot
boot || iseq ${idx} ${retries} && goto boot-error || inc idx && echo retry in ${retry_delay} seconds ; sleep ${retry_delay} ; goto retry_boot

:kernel-error
echo Failed to load kernel
imgfree
exit

:initrd-error
echo Failed to load initrd
imgfree
exit

:boot-error
echo Failed to boot
imgfree
exit
";

/// The Hook script (`auto.ipxe`) for a known machine. `default_download_url` is used when
/// neither the configuration nor the Hardware names an OSIE URL.
pub fn hook(cfg: &ScriptConfig, m: &Machine, default_download_url: &str) -> String {
    let arch = if m.arch.is_empty() { "x86_64" } else { &m.arch };
    let download_url = if !m.osie_base_url.is_empty() {
        m.osie_base_url.as_str()
    } else if !cfg.osie_url.is_empty() {
        cfg.osie_url.as_str()
    } else {
        default_download_url
    };
    // The Hardware's file name, else the configured name for this architecture.
    let file = |given: &str, name: &str| match given {
        "" => format!("{name}-{arch}"),
        given => given.to_string(),
    };
    let (kernel, initrd) = (
        file(&m.kernel, &cfg.kernel_name),
        file(&m.initrd, &cfg.initrd_name),
    );
    let mut s = String::with_capacity(2048);
    s.push_str("#!ipxe\n");
    syslog_block(&mut s, &cfg.syslog_host);
    s.push_str("\necho Loading the Tinkerbell Hook iPXE script...\n\n");
    let _ = write!(
        s,
        "set arch {arch}\nset download-url {download_url}\nset kernel {kernel}\nset initrd {initrd}\nset retries:int32 {}\nset retry_delay:int32 {}\n\n",
        cfg.retries, cfg.retry_delay
    );
    s.push_str("set idx:int32 0\n:retry_kernel\nkernel ${download-url}/${kernel}");
    if !m.vlan_id.is_empty() {
        let _ = write!(s, " vlan_id={}", m.vlan_id);
    }
    let _ = write!(
        s,
        " \\\nfacility={} syslog_host={} grpc_authority={} tinkerbell_tls={} tinkerbell_insecure_tls={} worker_id={} hw_addr={}",
        m.facility,
        cfg.syslog_host,
        cfg.tink_server,
        cfg.tink_tls,
        cfg.tink_insecure_tls,
        m.worker_id,
        m.mac
    );
    if let Some(t) = &m.worker_token {
        let _ = write!(s, " {}={t}", tinkerbell_core::worker_token::CMDLINE_PARAM);
    }
    s.push_str(" \\\nmodules=loop,squashfs,sd-mod,usb-storage intel_iommu=on iommu=pt initrd=${initrd} console=tty0 console=ttyS1,115200");
    for p in cfg.extra_kernel_args.iter().chain(&m.kernel_params) {
        s.push(' ');
        s.push_str(p);
    }
    s.push_str(TAIL);
    s
}

/// The static script of auto-proxy mode, for a machine without Hardware: iPXE fills in its
/// own MAC and architecture. `worker_token` is given when the MAC was in the URL.
pub fn static_script(cfg: &ScriptConfig, download_url: &str, worker_token: Option<&str>) -> String {
    let mut s = String::with_capacity(2048);
    s.push_str("#!ipxe\n");
    syslog_block(&mut s, &cfg.syslog_host);
    s.push_str("echo Loading the static Tinkerbell iPXE script...\n\nset arch ${buildarch}\n# Tinkerbell only supports 64 bit architectures.\n# The build architecture does not necessarily represent the architecture of the machine on which iPXE is running.\n# https://ipxe.org/cfg/buildarch\niseq ${arch} i386 && set arch x86_64 ||\niseq ${arch} arm32 && set arch aarch64 ||\niseq ${arch} arm64 && set arch aarch64 ||\n\n");
    let _ = write!(
        s,
        "set kernel {}-${{arch}}\nset initrd {}-${{arch}}\nset download-url {download_url}\nset retries:int32 {}\nset retry_delay:int32 {}\n\n",
        cfg.kernel_name, cfg.initrd_name, cfg.retries, cfg.retry_delay
    );
    let _ = write!(
        s,
        "set worker_id ${{mac}}\nset grpc_authority {t}\nset syslog_host {h}\nset tinkerbell_tls {tls}\n\necho worker_id=${{mac}}\necho grpc_authority={t}\necho syslog_host={h}\necho tinkerbell_tls={tls}\n\n",
        t = cfg.tink_server,
        h = cfg.syslog_host,
        tls = cfg.tink_tls
    );
    s.push_str("set idx:int32 0\n:retry_kernel\nkernel ${download-url}/${kernel} \\\nsyslog_host=${syslog_host} grpc_authority=${grpc_authority} tinkerbell_tls=${tinkerbell_tls} worker_id=${worker_id} hw_addr=${mac}");
    if let Some(t) = worker_token {
        let _ = write!(s, " {}={t}", tinkerbell_core::worker_token::CMDLINE_PARAM);
    }
    s.push_str(" \\\nconsole=tty1 console=tty2 console=ttyAMA0,115200 console=ttyAMA1,115200 console=ttyS0,115200 console=ttyS1,115200 \\\nintel_iommu=on iommu=pt");
    for p in &cfg.extra_kernel_args {
        s.push(' ');
        s.push_str(p);
    }
    s.push_str(" initrd=${initrd}");
    s.push_str(TAIL);
    s
}

/// A custom script is refused: its URL is not http(s).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("netboot.ipxe.url must be an http or https URL")]
pub struct BadChainUrl;

/// The custom script of a Hardware with `netboot.ipxe.url` (a chain, http/https only) or
/// `netboot.ipxe.contents` (verbatim); the URL wins when both are set.
pub fn custom(url: &str, contents: &str) -> Result<String, BadChainUrl> {
    let head = "#!ipxe\n\necho Loading custom Tinkerbell iPXE script...\n";
    if !url.is_empty() {
        let uri: http::Uri = url.parse().map_err(|_| BadChainUrl)?;
        let authority = uri.authority().ok_or(BadChainUrl)?.as_str();
        // The port, if any, must be a number (`http::Uri` lets `host:junk` through).
        let after_host = match authority.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map(|(_, rest)| rest).unwrap_or(""),
            None => authority.rsplit_once(':').map(|(_, p)| p).map_or("", |p| p),
        };
        let after_host = after_host.strip_prefix(':').unwrap_or(after_host);
        let port_ok = after_host.is_empty() || after_host.parse::<u16>().is_ok();
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(h)) if !h.is_empty() && port_ok => {}
            _ => return Err(BadChainUrl),
        }
        return Ok(format!("{head}chain --autofree {url}\n"));
    }
    Ok(format!("{head}{contents}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's own expectation (smee/internal/ipxe/script ipxe_test.go, "success with
    /// defaults"), reproduced exactly.
    #[test]
    fn matches_upstream_default_script() {
        let cfg = ScriptConfig {
            osie_url: "http://127.1.1.1".into(),
            retries: 10,
            retry_delay: 3,
            tink_server: "127.0.0.1:42113".into(),
            ..ScriptConfig::default()
        };
        let m = Machine {
            mac: "00:01:02:03:04:05".into(),
            arch: "x86_64".into(),
            vlan_id: "1234".into(),
            facility: "onprem".into(),
            worker_id: "00:01:02:03:04:05".into(),
            ..Machine::default()
        };
        let want = "#!ipxe\n\necho Loading the Tinkerbell Hook iPXE script...\n\nset arch x86_64\nset download-url http://127.1.1.1\nset kernel vmlinuz-x86_64\nset initrd initramfs-x86_64\nset retries:int32 10\nset retry_delay:int32 3\n\nset idx:int32 0\n:retry_kernel\nkernel ${download-url}/${kernel} vlan_id=1234 \\\nfacility=onprem syslog_host= grpc_authority=127.0.0.1:42113 tinkerbell_tls=false tinkerbell_insecure_tls=false worker_id=00:01:02:03:04:05 hw_addr=00:01:02:03:04:05 \\\nmodules=loop,squashfs,sd-mod,usb-storage intel_iommu=on iommu=pt initrd=${initrd} console=tty0 console=ttyS1,115200".to_string() + TAIL;
        assert_eq!(hook(&cfg, &m, ""), want);
    }

    /// Upstream's "no vlan" case with a syslog host and extra parameters.
    #[test]
    fn matches_upstream_syslog_and_extra_args() {
        let cfg = ScriptConfig {
            osie_url: "http://location:8080/to/kernel/and/initrd".into(),
            retries: 10,
            retry_delay: 3,
            tink_server: "1.2.3.4:42113".into(),
            syslog_host: "1.2.3.4".into(),
            extra_kernel_args: vec![
                "tink_worker_image=quay.io/tinkerbell/tink-worker:v0.8.0".into(),
                "tinkerbell=packet".into(),
            ],
            ..ScriptConfig::default()
        };
        let m = Machine {
            mac: "3c:ec:ef:4c:4f:54".into(),
            facility: "onprem".into(),
            worker_id: "3c:ec:ef:4c:4f:54".into(),
            ..Machine::default()
        };
        let got = hook(&cfg, &m, "");
        assert!(got.starts_with("#!ipxe\n# iPXE can only set the syslog server to an IP address, not a hostname (https://ipxe.org/cfg/syslog).\n# If target is an IP, save it directly; if not, resolve it via nslookup directly into the syslog variable.\nset check:ipv4 1.2.3.4 && set syslog 1.2.3.4 || nslookup syslog 1.2.3.4 || echo [WARN] Failed to resolve syslog host 1.2.3.4\nclear check\n\necho Loading the Tinkerbell Hook iPXE script...\n\nset arch x86_64\n"), "{got}");
        assert!(got.contains("kernel ${download-url}/${kernel} \\\nfacility=onprem syslog_host=1.2.3.4 grpc_authority=1.2.3.4:42113 tinkerbell_tls=false tinkerbell_insecure_tls=false worker_id=3c:ec:ef:4c:4f:54 hw_addr=3c:ec:ef:4c:4f:54 \\\nmodules=loop,squashfs,sd-mod,usb-storage intel_iommu=on iommu=pt initrd=${initrd} console=tty0 console=ttyS1,115200 tink_worker_image=quay.io/tinkerbell/tink-worker:v0.8.0 tinkerbell=packet && goto download_initrd"), "{got}");
    }

    /// Upstream's static script test, exactly.
    #[test]
    fn matches_upstream_static_script() {
        let cfg = ScriptConfig {
            extra_kernel_args: vec!["k=v".into(), "k2=v2".into()],
            syslog_host: "127.1.1.1".into(),
            tink_server: "127.0.0.1:42113".into(),
            retries: 0,
            retry_delay: 0,
            ..ScriptConfig::default()
        };
        let want = "#!ipxe\n# iPXE can only set the syslog server to an IP address, not a hostname (https://ipxe.org/cfg/syslog).\n# If target is an IP, save it directly; if not, resolve it via nslookup directly into the syslog variable.\nset check:ipv4 127.1.1.1 && set syslog 127.1.1.1 || nslookup syslog 127.1.1.1 || echo [WARN] Failed to resolve syslog host 127.1.1.1\nclear check\necho Loading the static Tinkerbell iPXE script...\n\nset arch ${buildarch}\n# Tinkerbell only supports 64 bit architectures.\n# The build architecture does not necessarily represent the architecture of the machine on which iPXE is running.\n# https://ipxe.org/cfg/buildarch\niseq ${arch} i386 && set arch x86_64 ||\niseq ${arch} arm32 && set arch aarch64 ||\niseq ${arch} arm64 && set arch aarch64 ||\n\nset kernel vmlinuz-${arch}\nset initrd initramfs-${arch}\nset download-url http://127.0.0.1\nset retries:int32 0\nset retry_delay:int32 0\n\nset worker_id ${mac}\nset grpc_authority 127.0.0.1:42113\nset syslog_host 127.1.1.1\nset tinkerbell_tls false\n\necho worker_id=${mac}\necho grpc_authority=127.0.0.1:42113\necho syslog_host=127.1.1.1\necho tinkerbell_tls=false\n\nset idx:int32 0\n:retry_kernel\nkernel ${download-url}/${kernel} \\\nsyslog_host=${syslog_host} grpc_authority=${grpc_authority} tinkerbell_tls=${tinkerbell_tls} worker_id=${worker_id} hw_addr=${mac} \\\nconsole=tty1 console=tty2 console=ttyAMA0,115200 console=ttyAMA1,115200 console=ttyS0,115200 console=ttyS1,115200 \\\nintel_iommu=on iommu=pt k=v k2=v2 initrd=${initrd}".to_string() + TAIL;
        assert_eq!(static_script(&cfg, "http://127.0.0.1", None), want);
    }

    /// Upstream's custom script cases.
    #[test]
    fn custom_scripts() {
        assert_eq!(
            custom("", "#!ipxe\nautoboot").unwrap(),
            "#!ipxe\n\necho Loading custom Tinkerbell iPXE script...\n#!ipxe\nautoboot\n"
        );
        assert_eq!(
            custom("https://boot.netboot.xyz", "").unwrap(),
            "#!ipxe\n\necho Loading custom Tinkerbell iPXE script...\nchain --autofree https://boot.netboot.xyz\n"
        );
        assert_eq!(custom("invalid", ""), Err(BadChainUrl));
        assert_eq!(custom("http://invalid.:123.com", ""), Err(BadChainUrl));
        assert_eq!(custom("tftp://1.2.3.4/x", ""), Err(BadChainUrl));
    }

    #[test]
    fn defaults_from_the_request_host() {
        let cfg = ScriptConfig {
            tink_server_port: Some(42113),
            syslog_local: true,
            ..ScriptConfig::default()
        };
        let c = cfg.for_host(Some("10.99.0.1"));
        assert_eq!(c.tink_server, "10.99.0.1:42113");
        assert_eq!(c.syslog_host, "10.99.0.1");
        assert_eq!(cfg.for_host(Some("fd99::1")).tink_server, "[fd99::1]:42113");
        assert_eq!(cfg.for_host(None).tink_server, "");
        // Configured values win.
        let set = ScriptConfig {
            tink_server: "tink.example:42113".into(),
            syslog_host: "10.0.0.9".into(),
            ..cfg.clone()
        };
        let c = set.for_host(Some("10.99.0.1"));
        assert_eq!(
            (c.tink_server.as_str(), c.syslog_host.as_str()),
            ("tink.example:42113", "10.0.0.9")
        );
        // Neither default asked for: untouched.
        let plain = ScriptConfig::default();
        assert_eq!(plain.for_host(Some("10.99.0.1")).syslog_host, "");
    }

    #[test]
    fn per_hardware_params_after_global_and_token_after_hw_addr() {
        let cfg = ScriptConfig {
            extra_kernel_args: vec!["global=1".into(), "shared=global".into()],
            ..ScriptConfig::default()
        };
        let m = Machine {
            mac: "00:01:02:03:04:05".into(),
            worker_id: "w1".into(),
            worker_token: Some("abc".into()),
            kernel_params: vec!["perhw=1".into(), "shared=perhw".into()],
            kernel: "k".into(),
            ..Machine::default()
        };
        let got = hook(&cfg, &m, "http://h/hookos");
        assert!(got.contains("hw_addr=00:01:02:03:04:05 worker_token=abc \\\n"));
        assert!(got.find("shared=perhw").unwrap() > got.find("shared=global").unwrap());
        assert!(got.contains("set kernel k\nset initrd initramfs-x86_64\n"));
        assert!(got.contains("set download-url http://h/hookos\n"));
    }
}
