//! Kubernetes end-to-end harness without a cluster provider (see "Testing without a cluster
//! provider" in the design notes).
//!
//! [`ControlPlane`] starts a real etcd + kube-apiserver + kube-controller-manager on loopback
//! through `shared/k8s/control-plane.sh`. Its controllers create real Pods (a StatefulSet's
//! Pods and claims, for example), but nothing runs them: there is no scheduler and no kubelet.
//! [`PodRunner`] plays both for every Pod in the API server. It binds each Pod to its own Node,
//! gives it a network namespace with an address on a bridge that the test process (and an
//! operator running beside it) can reach, materialises its volumes and runs its first container's
//! command as a host process, mapped to a host executable instead of pulling an image. It reports
//! the Pod's status (Ready from the readiness probe) back to the API server, restarts crashed
//! processes and finishes graceful deletions the way a kubelet does.
//!
//! Both need root (network namespaces, bridges, bind mounts) and `scripts/setup.sh` run once.

mod control_plane;
mod pod_runner;

pub use control_plane::ControlPlane;
pub use pod_runner::{PodRunner, PodRunnerConfig};
