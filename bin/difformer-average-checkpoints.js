#!/usr/bin/env node
// `difformer-average-checkpoints ...` = `difformer average-checkpoints ...` (see src/cli/main.ts).
import { main } from '../dist/src/cli/main.js';

process.exitCode = await main(process.argv.slice(2), 'average-checkpoints');
