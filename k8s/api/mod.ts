/**
 * tcpgadget's use of the Kubernetes API, with no access to any node's
 * files: the kubeconfig, a client whose every request is bounded and whose
 * failures are one line, watches of pods and services (names and labels
 * for events, owners of addresses), and the agents of cluster mode (their
 * pods, the exec API, the copy of tcpgadget into them, their deletion).
 *
 * @module
 */

export {
  inClusterKubeconfig,
  type KubeconfigOptions,
  type LoadedKubeconfig,
  loadKubeconfig,
} from "./kubeconfig.ts";
export {
  apiError,
  ApiUnreachableError,
  httpStatus,
  NoAnswerError,
  type RequestDescription,
} from "./api_errors.ts";
export { API_TIMEOUT_VARIABLE, apiTimeoutMs, DEFAULT_API_TIMEOUT_MS } from "./api_timeout.ts";
export { KubeClient, type KubeClientOptions } from "./kube_client.ts";
export { ClusterMetadata, type MetadataCoverage, type PodInfo } from "./cluster_metadata.ts";
export { MetadataEnricher } from "./metadata_enricher.ts";
export { selectNodes } from "./node_selection.ts";
export { agentPod, DEFAULT_AGENT_IMAGE, HOST_ROOT } from "./agent_pod.ts";
export { type AgentListener, type AgentRun, AgentSession } from "./agent_session.ts";
export { ExecDroppedError, execInPod, type ExecTarget } from "./exec.ts";
export { type Payload, preparePayload, uploadFiles } from "./self_copy.ts";
export { type CopyTarget, PayloadDistribution } from "./payload_distribution.ts";
export { deletePods, findAgentPods } from "./pod_cleanup.ts";
export { makeBundleDir, sweepAbandonedBundleDirs } from "./bundle_dir.ts";
