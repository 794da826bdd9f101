// Builds the binaries the tests run (switchboard, fcm-mock) with cargo, unless
// SWITCHBOARD_BIN_DIR names a directory that already holds them (CI, after `cargo test`).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

if (process.env.SWITCHBOARD_BIN_DIR) process.exit(0);
const manifest = fileURLToPath(new URL("../../../Cargo.toml", import.meta.url));
const result = spawnSync("cargo", ["build", "-q", "-p", "switchboard", "-p", "fcm-mock", "--bins", "--manifest-path", manifest], {
  stdio: "inherit",
});
if (result.error) {
  console.error(`cannot run cargo (${result.error.message}): build the repository's binaries, or set SWITCHBOARD_BIN_DIR`);
}
process.exit(result.status ?? 1);
