//! The supervisor's part in networking: for one boot, a place on the
//! container's network (address and tap), the guest's interface settings,
//! and the published ports' forwarders.

use hull_protocol::{GuestNetwork, HostEntry};
use thiserror::Error;

use crate::record::ContainerConfig;
use hull_net::forward::{self, Forwarders, PublishError};
use hull_net::{Attachment, NetworkError, Networks};
use hull_sandbox::hypervisor::NicSpec;

/// Why the container could not join its network.
#[derive(Debug, Error)]
pub enum JoinError {
    #[error("network {name}")]
    Attach {
        name: String,
        #[source]
        source: NetworkError,
    },
    #[error(transparent)]
    Publish(PublishError),
}

/// A boot's network, released by [`Joined::leave`].
pub struct Joined {
    attachment: Attachment,
    forwarders: Forwarders,
    networks: Networks,
    container_id: String,
}

/// Joins the container's network (if it has one) and publishes its ports;
/// `ready_tap`: a pooled clone's tap, already open by its hypervisor.
pub async fn join(
    networks: Networks,
    config: &ContainerConfig,
    ready_tap: Option<&str>,
) -> Result<Option<Joined>, JoinError> {
    let Some(name) = &config.network else {
        return Ok(None);
    };
    let mut names = vec![config.name.clone(), config.id[..12].to_string()];
    names.extend(config.aliases.iter().cloned());
    let attachment = networks
        .attach_with(name, &config.id, names, ready_tap)
        .map_err(|source| JoinError::Attach {
            name: name.clone(),
            source,
        })?;
    let forwarders =
        match forward::start(&config.ports, &attachment.netns, attachment.address).await {
            Ok(f) => f,
            Err(e) => {
                networks.detach(name, &config.id);
                return Err(JoinError::Publish(e));
            }
        };
    Ok(Some(Joined {
        attachment,
        forwarders,
        networks,
        container_id: config.id.clone(),
    }))
}

impl Joined {
    pub fn nic(&self) -> NicSpec {
        NicSpec {
            tap: self.attachment.tap.clone(),
            mac: self.attachment.mac.clone(),
            netns: self.attachment.netns.clone(),
        }
    }

    /// What the agent configures in the guest.
    pub fn guest(&self) -> GuestNetwork {
        let a = &self.attachment;
        GuestNetwork {
            mac: a.mac.clone(),
            address: format!("{}/{}", a.address, a.prefix),
            gateway: Some(a.gateway.to_string()),
            mtu: a.mtu,
            hosts: a
                .peers
                .iter()
                .map(|(ip, names)| HostEntry {
                    ip: ip.to_string(),
                    names: names.clone(),
                })
                .collect(),
            dns: vec![a.gateway.to_string()],
        }
    }

    pub fn address(&self) -> std::net::Ipv4Addr {
        self.attachment.address
    }

    /// Stops the forwarders and gives the address and tap back.
    pub fn leave(self) {
        self.forwarders.stop();
        self.networks
            .detach(&self.attachment.network, &self.container_id);
    }
}
