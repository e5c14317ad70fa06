import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import { TripwireOptions, TripwireQuery, TripwireSecureOptions } from './types';

// Variables (hosts, rules) and annotations (alerts) are supported by the DataSource
// itself: see its variables and annotations fields.
export const plugin = new DataSourcePlugin<DataSource, TripwireQuery, TripwireOptions, TripwireSecureOptions>(
  DataSource
)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
