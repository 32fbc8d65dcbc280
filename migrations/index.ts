import type { Migration } from 'kysely/migration';
import * as initial from './0001-initial.js';
import * as heldAndCampaignFunnel from './0002-held-lists-and-campaign-funnel.js';
import * as campaignUniqueNullable from './0003-campaign-unique-identifiers-nullable.js';
import * as asciiBeforeLowercase from './0004-ascii-before-lowercase.js';
import * as planEntriesKeyset from './0005-plan-entries-keyset.js';
import * as listSnapshots from './0006-list-snapshots.js';
import * as sourceChangeLog from './0007-source-change-log.js';
import * as listsByName from './0008-lists-by-name.js';
import * as internationalEmails from './0009-international-emails.js';
import * as sharedRateBudget from './0010-shared-rate-budget.js';
import * as bulkChangeMarkers from './0011-bulk-change-markers.js';
import * as unloggedSnapshot from './0012-unlogged-snapshot.js';
import * as inlinableEmailIdentifier from './0013-inlinable-email-identifier.js';
import * as runChangeKeys from './0014-run-change-keys.js';
import * as rateSlotEnds from './0015-rate-slot-ends.js';
import * as snapshotPartitions from './0016-snapshot-partitions.js';
import * as fillRanges from './0017-fill-ranges.js';
import * as cheaperEmailPattern from './0018-cheaper-email-pattern.js';
import * as snapshotWrittenByItsRead from './0019-snapshot-written-by-its-read.js';
import * as snapshotKeyCarriesState from './0020-snapshot-key-carries-state.js';
import * as listCountersRecounted from './0021-list-counters-recounted.js';

/** Numbered, forward-only, one change each. Static so a bundled build needs no file scanning. */
export const migrations: Record<string, Migration> = {
  '0001-initial': initial,
  '0002-held-lists-and-campaign-funnel': heldAndCampaignFunnel,
  '0003-campaign-unique-identifiers-nullable': campaignUniqueNullable,
  '0004-ascii-before-lowercase': asciiBeforeLowercase,
  '0005-plan-entries-keyset': planEntriesKeyset,
  '0006-list-snapshots': listSnapshots,
  '0007-source-change-log': sourceChangeLog,
  '0008-lists-by-name': listsByName,
  '0009-international-emails': internationalEmails,
  '0010-shared-rate-budget': sharedRateBudget,
  '0011-bulk-change-markers': bulkChangeMarkers,
  '0012-unlogged-snapshot': unloggedSnapshot,
  '0013-inlinable-email-identifier': inlinableEmailIdentifier,
  '0014-run-change-keys': runChangeKeys,
  '0015-rate-slot-ends': rateSlotEnds,
  '0016-snapshot-partitions': snapshotPartitions,
  '0017-fill-ranges': fillRanges,
  '0018-cheaper-email-pattern': cheaperEmailPattern,
  '0019-snapshot-written-by-its-read': snapshotWrittenByItsRead,
  '0020-snapshot-key-carries-state': snapshotKeyCarriesState,
  '0021-list-counters-recounted': listCountersRecounted,
};
