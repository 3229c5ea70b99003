//! TLS set-up shared by everything in the crate that speaks HTTPS (the
//! registry client of `hull pull` and the credential check of `hull
//! login`).
//!
//! Model: rustls's process-wide default crypto provider. We build reqwest
//! and oci-client without aws-lc (which needs a C toolchain and doubles the
//! TLS code), so ring's provider has to be installed before the first
//! client is made.

/// Installs ring as rustls's crypto provider, once per process.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_is_harmless() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
