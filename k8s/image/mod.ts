/**
 * The agent image (`tcpgadget image build`): the running tcpgadget, its
 * loader and libraries in one reproducible layer, written as an OCI
 * archive that registries' tools and `docker load` take; agent pods then
 * run {@link AGENT_IMAGE_PROGRAM} from it with nothing uploaded.
 *
 * @module
 */

export {
  AGENT_IMAGE_BUNDLE,
  AGENT_IMAGE_DENO,
  AGENT_IMAGE_DENO_DIR,
  AGENT_IMAGE_IDLE_BUNDLE,
  AGENT_IMAGE_PROGRAM,
  type AgentImage,
  agentImageConfig,
  agentImageEntries,
  BUNDLE_SHEBANG,
  LAUNCHER,
  ociArchitecture,
  writeAgentImage,
} from "./agent_image.ts";
export {
  type ElfDependencies,
  elfDependencies,
  type ImageFile,
  libraryDirectories,
  multiarch,
} from "./elf_dependencies.ts";
export {
  type ElfLinking,
  elfLinking,
  elfLinkingOfBytes,
  elfLinkingOfFile,
  EM_AARCH64,
  EM_X86_64,
  UnsupportedElfError,
} from "./elf_file.ts";
export { type ImageReference, parseImageReference } from "./image_reference.ts";
export { LAYER_MEDIA_TYPE, type LayerBlob, type LayerEntry, writeLayer } from "./image_layer.ts";
export { OciArchiveFile, type WrittenArchive } from "./oci_archive.ts";
