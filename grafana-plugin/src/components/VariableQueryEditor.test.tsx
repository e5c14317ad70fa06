import React, { useState } from 'react';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

// No pause between keystrokes: these tests are about the model, not timing.
const user = userEvent.setup({ delay: null });

import { newDataSource } from '../testing/fixtures';
import { TripwireVariableQuery } from '../types';
import { VariableQueryEditor } from './VariableQueryEditor';

function renderEditor(initial: TripwireVariableQuery) {
  const changes: TripwireVariableQuery[] = [];
  const datasource = newDataSource();
  function Variable() {
    const [query, setQuery] = useState(initial);
    return (
      <VariableQueryEditor
        datasource={datasource}
        query={query}
        onChange={(next) => {
          changes.push(next);
          setQuery(next);
        }}
        onRunQuery={() => {}}
      />
    );
  }
  render(<Variable />);
  return changes;
}

describe('VariableQueryEditor', () => {
  it('lists hosts by default and switches to rules and back', async () => {
    const changes = renderEditor({ refId: 'variable' } as TripwireVariableQuery);
    expect(screen.getByRole('radio', { name: 'Hosts' })).toBeChecked();

    await user.click(screen.getByRole('radio', { name: 'Rules' }));
    expect(changes).toEqual([{ refId: 'variable', queryType: 'rules' }]);
    expect(screen.getByRole('radio', { name: 'Rules' })).toBeChecked();

    await user.click(screen.getByRole('radio', { name: 'Hosts' }));
    expect(changes[1]).toEqual({ refId: 'variable', queryType: 'hosts' });
  });

  it('reads a variable saved as a plain string', async () => {
    const changes = renderEditor('rules' as unknown as TripwireVariableQuery);
    expect(screen.getByRole('radio', { name: 'Rules' })).toBeChecked();
    await user.click(screen.getByRole('radio', { name: 'Hosts' }));
    expect(changes).toEqual([{ refId: 'variable', queryType: 'hosts' }]);
  });
});
