#!/usr/bin/env node
// `difformer-distill ...` = `difformer distill ...` (see src/cli/main.ts).
import { main } from '../dist/src/cli/main.js';

process.exitCode = await main(process.argv.slice(2), 'distill');
