//! The rustls configuration: TLS 1.3, X25519MLKEM768 only, mutual fleet
//! certificate authentication, ALPN `osmoda/1`.

use std::sync::Arc;

use osmoda_fabric_proto::NodeKey;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls::version::TLS13;
use rustls::{ClientConfig, ServerConfig};

use super::kx::X25519_MLKEM768;
use super::live::LiveTlsCert;
use super::verifier::FleetVerifier;
use crate::Membership;

/// The application protocol negotiated on every osmoda QUIC connection.
pub const ALPN: &[u8] = b"osmoda/1";

/// rustls needs a server name to dial; certificates are checked by key and
/// fleet membership, never by name, so any valid DNS name does.
pub(crate) const SERVER_NAME: &str = "osmoda";

/// ring's default provider restricted to TLS 1.3 cipher suites and to the
/// single X25519MLKEM768 key-exchange group: a peer that cannot do the
/// hybrid exchange gets a handshake failure, never a classical fallback.
pub fn crypto_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![X25519_MLKEM768];
    provider
        .cipher_suites
        .retain(|suite| suite.tls13().is_some());
    provider
}

/// Configuration for accepting connections: client certificates required.
pub(crate) fn server_config(
    provider: Arc<CryptoProvider>,
    local: Arc<LiveTlsCert>,
    membership: Arc<Membership>,
) -> Result<ServerConfig, rustls::Error> {
    let verifier = FleetVerifier::new(membership, None, provider.signature_verification_algorithms);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(local);
    config.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: a resumed session skips the certificate check, and with
    // it the revocation check. No 0-RTT: early data would arrive before the
    // client is verified and could be replayed.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// Configuration for dialing. With `expected`, the listener must present
/// that identity key.
pub(crate) fn client_config(
    provider: Arc<CryptoProvider>,
    local: Arc<LiveTlsCert>,
    membership: Arc<Membership>,
    expected: Option<NodeKey>,
) -> Result<ClientConfig, rustls::Error> {
    let verifier = FleetVerifier::new(
        membership,
        expected,
        provider.signature_verification_algorithms,
    );
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(local);
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quic::cert::unix_now;
    use crate::Credentials;
    use osmoda_fabric_proto::{FleetRoot, Role};
    use rand::rngs::OsRng;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, NamedGroup, ProtocolVersion, ServerConnection};

    fn local(root: &FleetRoot) -> Arc<LiveTlsCert> {
        let secret = ed25519_dalek::SigningKey::generate(&mut OsRng).to_bytes();
        let node = ed25519_dalek::SigningKey::from_bytes(&secret)
            .verifying_key()
            .to_bytes();
        let now = unix_now();
        let cert = root
            .issue(node, "n", Role::Member, now - 10, now + 60)
            .unwrap();
        let credentials = Credentials::new(&secret, cert).unwrap();
        LiveTlsCert::new(credentials.into(), Arc::new(crypto_provider())).unwrap()
    }

    /// Runs a handshake in memory; returns both ends or the first error.
    fn handshake(
        client: ClientConfig,
        server: ServerConfig,
    ) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let mut client = ClientConnection::new(Arc::new(client), name)?;
        let mut server = ServerConnection::new(Arc::new(server))?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets()?;
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok((client, server));
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn quic_tls_negotiates_x25519mlkem768_and_tls13() {
        let root = FleetRoot::generate(&mut OsRng);
        let membership = Membership::new(root.public());
        let provider = Arc::new(crypto_provider());
        let server = server_config(provider.clone(), local(&root), membership.clone()).unwrap();
        let client = client_config(provider, local(&root), membership, None).unwrap();
        let (client, server) = handshake(client, server).unwrap();
        for (group, version, alpn) in [
            (
                client.negotiated_key_exchange_group().map(|g| g.name()),
                client.protocol_version(),
                client.alpn_protocol(),
            ),
            (
                server.negotiated_key_exchange_group().map(|g| g.name()),
                server.protocol_version(),
                server.alpn_protocol(),
            ),
        ] {
            assert_eq!(group, Some(NamedGroup::X25519MLKEM768));
            assert_eq!(version, Some(ProtocolVersion::TLSv1_3));
            assert_eq!(alpn, Some(ALPN));
        }
    }

    #[test]
    fn quic_tls_refuses_a_classical_only_client() {
        let root = FleetRoot::generate(&mut OsRng);
        let membership = Membership::new(root.public());
        let ours = Arc::new(crypto_provider());
        let mut classical = rustls::crypto::ring::default_provider();
        classical.kx_groups = vec![rustls::crypto::ring::kx_group::X25519];
        let server = server_config(ours, local(&root), membership.clone()).unwrap();
        let client = client_config(Arc::new(classical), local(&root), membership, None).unwrap();
        assert!(handshake(client, server).is_err());
    }

    #[test]
    fn quic_tls_client_refuses_an_unexpected_listener() {
        let root = FleetRoot::generate(&mut OsRng);
        let membership = Membership::new(root.public());
        let provider = Arc::new(crypto_provider());
        let server = server_config(provider.clone(), local(&root), membership.clone()).unwrap();
        let client = client_config(provider, local(&root), membership, Some([7; 32])).unwrap();
        let err = handshake(client, server).err().unwrap();
        assert!(
            err.to_string().contains("not the node that was dialed"),
            "{err}"
        );
    }
}
