//! The TLS certificate this node presents, made again after its fleet
//! certificate is renewed: rustls asks for it at every handshake, so a
//! renewal applies to every QUIC connection made after it, on listeners
//! and dials alike, without rebuilding the endpoints.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use tracing::warn;

use super::cert::LocalCertificate;
use crate::LiveCredentials;

/// This node's X.509 certificate and key, as rustls wants them, for the
/// fleet certificate it holds now.
pub(crate) struct LiveTlsCert {
    credentials: LiveCredentials,
    provider: Arc<CryptoProvider>,
    /// The fleet certificate's expiry the key was made for (a renewal
    /// always moves it later), and the key.
    made: Mutex<(u64, Arc<CertifiedKey>)>,
}

impl std::fmt::Debug for LiveTlsCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTlsCert").finish_non_exhaustive()
    }
}

fn certified(
    credentials: &crate::Credentials,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let local = LocalCertificate::generate(credentials)
        .map_err(|e| rustls::Error::General(format!("cannot make the TLS certificate: {e}")))?;
    let key = provider.key_provider.load_private_key(local.key.into())?;
    Ok(Arc::new(CertifiedKey::new(vec![local.cert], key)))
}

impl LiveTlsCert {
    pub(crate) fn new(
        credentials: LiveCredentials,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let now = credentials.current();
        let key = certified(&now, &provider)?;
        Ok(Arc::new(Self {
            made: Mutex::new((now.cert().expires_at, key)),
            credentials,
            provider,
        }))
    }

    /// The key for the certificate held now; the one made before if a new
    /// one cannot be made (peers then see the older certificate, still
    /// valid until its own expiry).
    fn current(&self) -> Arc<CertifiedKey> {
        let now = self.credentials.current();
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if made.0 != now.cert().expires_at {
            match certified(&now, &self.provider) {
                Ok(key) => *made = (now.cert().expires_at, key),
                Err(e) => warn!(error = %e, "keeping the previous TLS certificate"),
            }
        }
        made.1.clone()
    }
}

impl ResolvesServerCert for LiveTlsCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for LiveTlsCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
