// Loaded before every test file (bunfig.toml): in-process servers log warnings and errors only.
// Tests of the log lines themselves configure their own level and sink.
import { log } from "../shared/log.ts";

export const TEST_LOG_LEVEL = "warn";
log.configure({ level: TEST_LOG_LEVEL });
