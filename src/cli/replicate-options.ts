import { Option, type Command } from 'commander';
import type { SettingKind } from '../config/setting-kinds.js';
import { flagAttr, SETTINGS, type Setting } from '../config/settings-table.js';
import { durationArg, niceArg, nonNegativeNumberArg, positiveIntArg, sizeArg } from './cli-util.js';

/**
 * The options of `pitr replicate`, one per row of the settings table (src/config/settings-table.ts):
 * same flags, defaults and help as the config file's keys. Values arrive parsed (ms, bytes).
 */
export function replicateOptions(): Option[] {
  return SETTINGS.map(toOption);
}

/** Attribute names of the options given on the command line (not defaulted), for agentConfigFrom. */
export function givenFlags(cmd: Command): Set<string> {
  return new Set(SETTINGS.map(flagAttr).filter((attr) => cmd.getOptionValueSource(attr) === 'cli'));
}

function toOption(s: Setting): Option {
  const o = new Option(s.flag, s.help);
  const parser = argParser(s.kind, s.flag.replace(/ .*/, ''), s.key);
  if (parser) o.argParser(parser);
  if (s.choices) o.choices(s.choices);
  // `--no-x` carries its own default (true); giving it again would only print "(default: true)".
  if (s.default !== undefined && !s.flag.startsWith('--no-')) o.default(s.default, s.defaultText);
  if (s.hidden) o.hideHelp();
  return o;
}

function argParser(kind: SettingKind, flag: string, key: string): ((v: string) => unknown) | undefined {
  switch (kind) {
    case 'duration':
      return durationArg(flag);
    case 'size':
      return sizeArg(flag);
    case 'positive-int':
      return positiveIntArg;
    case 'non-negative-number':
      return nonNegativeNumberArg;
    case 'int':
      if (key !== 'nice') throw new Error(`no command-line parser for int setting ${key}`);
      return niceArg;
    default:
      return undefined;
  }
}
