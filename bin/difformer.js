#!/usr/bin/env node
// `difformer <cmd> ...`: see src/cli/main.ts. Runs the compiled dist/ (npm run build).
import { main } from '../dist/src/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
