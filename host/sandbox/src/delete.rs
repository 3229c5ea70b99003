//! Ending a sandbox: ask the agent to power off, wait briefly, kill if it
//! does not, and remove the sandbox directory.

use std::time::Duration;

use hull_protocol::Request;

use super::Sandbox;

/// How long a clean power-off may take before the VM is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

impl Sandbox {
    /// Kills the VM at once (no clean power-off) and removes its directory.
    pub async fn destroy(mut self) {
        if self.is_guest() {
            // Not our VM to kill: the container alone goes, at once.
            self.leave().await;
            return;
        }
        self.client.take();
        if let Some(vm) = self.vm.as_mut() {
            vm.kill().await;
        }
        self.vm = None;
    }

    pub async fn delete(mut self) {
        if self.is_guest() {
            self.leave().await;
            if let Some(shares) = self.shares.take() {
                shares.stop().await;
            }
            return;
        }
        if let Some(client) = self.client.take() {
            client.notify(Request::Shutdown);
        }
        if let Some(vm) = self.vm.as_mut() {
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, vm.wait())
                .await
                .is_err()
            {
                tracing::warn!(sandbox = %self.id, "VM ignored the shutdown request; killing it");
                vm.kill().await;
            }
        }
        self.vm = None;
        // The VM is gone, and its port with it.
        drop(self.shares.take());
        // Drop removes the directory.
    }
}
