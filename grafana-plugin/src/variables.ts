import { CustomVariableSupport, DataQueryRequest, DataQueryResponse } from '@grafana/data';
import { from, map, Observable } from 'rxjs';

import type { DataSource } from './datasource';
import { VariableQueryEditor } from './components/VariableQueryEditor';
import { TripwireOptions, TripwireQuery, TripwireVariableQuery } from './types';

/** Dashboard variables whose values are the collector's hosts or rules. */
export class TripwireVariableSupport extends CustomVariableSupport<
  DataSource,
  TripwireVariableQuery,
  TripwireQuery,
  TripwireOptions
> {
  editor = VariableQueryEditor;

  constructor(private readonly datasource: DataSource) {
    super();
  }

  query(request: DataQueryRequest<TripwireVariableQuery>): Observable<DataQueryResponse> {
    return from(this.datasource.metricFindQuery(request.targets[0])).pipe(map((values) => ({ data: values })));
  }
}
