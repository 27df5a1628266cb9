/**
 * Import rules checked by `pnpm lint`. A cycle, between files or between packages (workspace
 * imports resolve to the other package's sources), fails the lint.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Modules that import each other, directly or through others, cannot be read, tested or loaded on their own.',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|dist)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.base.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['@darkroom/source', 'import', 'require', 'node', 'default'] },
  },
};
