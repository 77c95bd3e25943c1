//! Object names as Kubernetes checks them (`k8s.io/apimachinery/pkg/util/validation`): every
//! backend and every input path (apply, hardware.csv) applies the same rules.

/// The longest object name (a DNS-1123 subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// The longest namespace (a DNS-1123 label).
pub const MAX_LABEL_LEN: usize = 63;

fn alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Lower-case letters, digits and '-', starting and ending with a letter or digit.
fn is_label_shaped(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.iter().all(|&c| alnum(c) || c == b'-')
        && alnum(b[0])
        && alnum(b[b.len() - 1])
}

/// A DNS-1123 subdomain (object names): dot-separated labels, at most 253 characters in all.
/// As Kubernetes, a single label of a subdomain is not held to 63 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && s.split('.').all(is_label_shaped)
}

/// A DNS-1123 label (namespaces): one label, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= MAX_LABEL_LEN && is_label_shaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        let long_label = "a".repeat(64);
        for ok in [
            "a",
            "node-1",
            "a.b.c",
            "1abc",
            "x.example.com",
            "eksa-system",
            "bmc-cp-0-auth",
            // Kubernetes takes a label longer than 63 inside a name.
            long_label.as_str(),
        ] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "",
            "Node",
            "A",
            "a..b",
            "a.-b",
            "-a",
            "a-",
            "a_b",
            ".a",
            "a.",
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert!(is_dns1123_label("eksa-system"));
        assert!(is_dns1123_label(&"a".repeat(63)));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label("-a"));
    }
}
