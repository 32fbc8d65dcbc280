import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import { ambiguousName, findOrCreateList } from '../criteo/find-or-create.js';
import { criteoListsCsv, criteoListsTable, listCriteoLists } from '../report/criteo-lists.js';
import { withApp } from './app.js';
import { json, out } from './output.js';

/**
 * `lists`: the contact lists the credentials can see, with what the job knows
 * of each; `lists create`: a list found or created by advertiser and name,
 * idempotent when two CSMs run it at once.
 */

const numeric = (flag: string, value: string) => {
  if (!/^[1-9]\d*$/.test(value)) throw new ConfigError(`${flag}: ${JSON.stringify(value)} is not a numeric id`);
  return value;
};

export function addListsCommands(program: Command): void {
  // Commander lets a command's options be positional (before its subcommand only) when its parent's are too.
  program.enablePositionalOptions();
  const lists = program
    .command('lists')
    // `lists --advertiser` and `lists create --advertiser` are each their own command's option.
    .enablePositionalOptions()
    .description('every contact list the credentials can see, with the campaigns feeding it, its ledger, last sync and Criteo statistics')
    .option('--advertiser <id...>', 'only these advertisers')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'csv']).default('table'))
    .option('--refresh', "read each list's statistics from Criteo now (one call a list, within the rate limit)")
    .action(async (opts: { advertiser?: string[]; format: 'table' | 'json' | 'csv'; refresh?: boolean }) => {
      const advertiserIds = opts.advertiser?.map((a) => numeric('--advertiser', a));
      const bar =
        opts.refresh && process.stderr.isTTY
          ? new cliProgress.SingleBar({ format: 'statistics [{bar}] {value}/{total} lists', stream: process.stderr })
          : undefined;
      const rows = await withApp({ database: true, criteo: true }, ({ database, client }) =>
        listCriteoLists(database.db, client, {
          ...(advertiserIds ? { advertiserIds } : {}),
          refresh: opts.refresh ?? false,
          onRefreshed: (done, total) => {
            if (done === 1) bar?.start(total, 0);
            bar?.update(done);
          },
        }),
      );
      bar?.stop();
      if (opts.format === 'json') json(rows);
      else if (opts.format === 'csv') process.stdout.write(criteoListsCsv(rows));
      else out(criteoListsTable(rows));
    });

  lists
    .command('create')
    .description('find the contact list of this name under the advertiser, or create it (safe when two run at once); prints its id')
    .requiredOption('--advertiser <id>', 'the advertiser the list belongs to')
    .requiredOption('--name <name>', "the list's name, unique under the advertiser")
    .option('--description <text>', 'a description, when the list is created')
    .option('--json', 'print the list as JSON')
    .action(async (opts: { advertiser: string; name: string; description?: string; json?: boolean }) => {
      const advertiserId = numeric('--advertiser', opts.advertiser);
      const name = opts.name.trim();
      if (name === '') throw new ConfigError('--name: a list needs a name');
      const result = await withApp({ database: true, criteo: true }, ({ client }) =>
        findOrCreateList(client, { advertiserId, name, ...(opts.description ? { description: opts.description } : {}) }),
      );
      if (result.kind === 'ambiguous') throw new Error(ambiguousName(advertiserId, name, result.ids));
      if (result.kind === 'absent') throw new Error(`list ${JSON.stringify(name)} of advertiser ${advertiserId} could not be found or created`);
      const { list } = result;
      if (opts.json) json({ ...list, created: result.kind === 'created' });
      else out(list.id);
      if (result.kind === 'created') process.stderr.write(`created list ${list.id}: Criteo serves a new list about 24 hours after it is created\n`);
    });
}
