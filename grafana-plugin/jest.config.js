// Grafana's scaffolded Jest configuration (.config/jest.config.js), extended to also
// transform .mjs files: d3-color 3.1.1, which @grafana/data needs, ships only ESM .mjs.
const base = require('./.config/jest.config');

const swc = base.transform['^.+\\.(t|j)sx?$'];

module.exports = {
  ...base,
  // Typing into @grafana/ui inputs under jsdom takes seconds on a shared 2-core machine.
  testTimeout: 60000,
  transform: {
    '^.+\\.(t|j)sx?$': swc,
    '^.+\\.mjs$': swc,
  },
};
