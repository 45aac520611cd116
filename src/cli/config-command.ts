import { Command } from 'commander';
import { describeConfig } from '../config/describe-config.js';
import { loadConfig } from '../config/load-config.js';
import { reportError } from './cli-util.js';

export function configCommand(): Command {
  const cmd = new Command('config').summary('check an agent config file').description('Work with the YAML file `pitr replicate --config FILE` reads.');
  cmd.addCommand(
    new Command('check')
      .summary('validate a config file and print what the agent would run')
      .description(
        'Read FILE as `pitr replicate --config FILE` would (environment variables expanded, defaults applied, ' +
          'global settings inherited by each database and replica) and print every database entry with its ' +
          'effective settings. Exits 0 when the file is valid, 1 with the first problem (file, line, key) otherwise.',
      )
      .argument('<file>', 'the config file (YAML)')
      .option('--json', 'print the resolved config as JSON (durations in ms, sizes in bytes)')
      .option('--no-expand-env', 'take ${VAR} and $VAR literally, as `pitr replicate --no-expand-env` would')
      .action((file: string, flags: { json?: boolean; expandEnv: boolean }) => {
        try {
          const config = loadConfig(file, { expandEnv: flags.expandEnv, env: process.env });
          process.stdout.write(flags.json ? `${JSON.stringify(config, null, 2)}\n` : describeConfig(config));
          process.exitCode = 0;
        } catch (err) {
          process.exitCode = reportError(err);
        }
      }),
  );
  return cmd;
}
