/**
 * Silences Node's deprecation warnings before the Kubernetes client loads:
 * one of its dependencies requires the deprecated `punycode` module, and
 * the warning it prints on every run says nothing to a tcpgadget user.
 * Imported first by the cluster-mode modules, for its side effect.
 *
 * @module
 */

import process from "node:process";

process.noDeprecation = true;
