import React, { useState } from 'react';
import { DataSourceSettings } from '@grafana/data';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

// No pause between keystrokes: these tests are about the model, not timing.
const user = userEvent.setup({ delay: null });

import { TripwireOptions, TripwireSecureOptions } from '../types';
import { ConfigEditor, validateUrl } from './ConfigEditor';

type Settings = DataSourceSettings<TripwireOptions, TripwireSecureOptions>;

function settings(patch: Partial<Settings> = {}): Settings {
  return {
    id: 1,
    uid: 'tripwire',
    orgId: 1,
    name: 'Tripwire',
    type: 'tripwire-tripwire-datasource',
    typeName: 'Tripwire',
    typeLogoUrl: '',
    access: 'proxy',
    url: '',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    withCredentials: false,
    readOnly: false,
    jsonData: {},
    secureJsonFields: {},
    ...patch,
  };
}

/** Renders the editor as Grafana does: every change is fed back as the new options. */
function renderEditor(initial: Settings) {
  const changes: Settings[] = [];
  function Host() {
    const [options, setOptions] = useState(initial);
    return (
      <ConfigEditor
        options={options}
        onOptionsChange={(next) => {
          changes.push(next);
          setOptions(next);
        }}
      />
    );
  }
  render(<Host />);
  return { last: () => changes[changes.length - 1], changes };
}

describe('ConfigEditor', () => {
  it('puts the collector URL in jsonData', async () => {
    const { last } = renderEditor(settings());
    await user.type(screen.getByLabelText(/^URL/), 'http://127.0.0.1:8080');
    expect(last().jsonData).toEqual({ url: 'http://127.0.0.1:8080' });
    expect(last().secureJsonData ?? {}).toEqual({});
    expect(screen.queryByText(/is not a URL/)).not.toBeInTheDocument();
  });

  it('says why a URL is unusable', () => {
    renderEditor(settings({ jsonData: { url: 'ftp://collector' } }));
    expect(screen.getByText('scheme "ftp" is not http or https')).toBeInTheDocument();
  });

  it('puts the API token in secureJsonData only', async () => {
    const { last } = renderEditor(settings({ jsonData: { url: 'http://127.0.0.1:8080' } }));
    await user.type(screen.getByLabelText(/^API token/), 's3cret');
    expect(last().secureJsonData).toEqual({ apiToken: 's3cret' });
    expect(JSON.stringify(last().jsonData)).not.toContain('s3cret');
  });

  it('resets a configured token', async () => {
    const { last } = renderEditor(settings({ secureJsonFields: { apiToken: true } }));
    expect(screen.getByLabelText(/^API token/)).toHaveValue('configured');
    await user.click(screen.getByRole('button', { name: 'Reset' }));
    expect(last().secureJsonFields).toEqual({ apiToken: false });
    expect(last().secureJsonData).toEqual({ apiToken: '' });
    expect(screen.getByLabelText(/^API token/)).toHaveValue('');
  });

  it('sets TLS options in jsonData and the CA certificate in secureJsonData', async () => {
    const { last } = renderEditor(settings());
    await user.click(screen.getByLabelText('Skip TLS verify'));
    expect(last().jsonData).toEqual({ tlsSkipVerify: true });

    expect(screen.queryByLabelText('CA certificate')).not.toBeInTheDocument();
    await user.click(screen.getByLabelText('With CA certificate'));
    expect(last().jsonData).toEqual({ tlsSkipVerify: true, tlsAuthWithCACert: true });

    const pem = '-----BEGIN CERTIFICATE-----';
    await user.type(screen.getByLabelText('CA certificate'), pem);
    expect(last().secureJsonData).toEqual({ tlsCACert: pem });
    expect(JSON.stringify(last().jsonData)).not.toContain('BEGIN');
  });
});

describe('validateUrl', () => {
  it.each<[string | undefined, string | undefined]>([
    [undefined, undefined],
    ['', undefined],
    ['http://127.0.0.1:8080', undefined],
    ['https://collector.example:8443/base', undefined],
    ['127.0.0.1:8080', '"127.0.0.1:8080" is not a URL; expected e.g. http://127.0.0.1:8080'],
    ['ftp://collector', 'scheme "ftp" is not http or https'],
    ['not a url', '"not a url" is not a URL; expected e.g. http://127.0.0.1:8080'],
  ])('%s', (url, want) => {
    expect(validateUrl(url)).toBe(want);
  });
});
