// Who signed in ({ name, role } from GET /api/v1/whoami): the role decides which buttons
// show. The server still checks every request.

export const session = { who: null, stop: null };

const ROLES = ["viewer", "operator", "admin"];

// Whether the signed-in role is at least `role`.
export function may(role) {
  return session.who !== null && ROLES.indexOf(session.who.role) >= ROLES.indexOf(role);
}
