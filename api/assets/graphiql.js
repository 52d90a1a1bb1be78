// Starts GraphiQL on /graphql. A token goes in the Headers tab:
// {"Authorization": "Bearer <token>"}
"use strict";
(function () {
  const root = document.getElementById("graphiql");
  const fetcher = GraphiQL.createFetcher({ url: root.dataset.endpoint });
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultHeaders: '{"Authorization": "Bearer <token>"}',
      defaultEditorToolsVisibility: "headers",
    })
  );
})();
