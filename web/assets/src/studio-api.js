// The studio's JSON calls to /studio/api/... (CSRF token from the page) and its message line.
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

// what to tell the user about an error: the server's and our own messages are Chinese; anything else (a
// library's or the browser's English) is logged and said in general words
export function errorText(err) {
  const text = (err && err.message) || '';
  if (/[\u4e00-\u9fff]/.test(text)) return text;
  console.error(err); // eslint-disable-line no-console
  return '页面出错,操作未完成。请刷新页面后重试';
}

export async function api(url, body, method) {
  let response;
  try {
    response = await fetch(url, {
    method: method || (body === undefined ? 'GET' : 'POST'),
    headers: { 'Content-Type': 'application/json', 'X-CSRFToken': csrf(), Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    });
  } catch (err) {
    throw new Error('无法连接服务器,请检查网络后重试');
  }
  let data = {};
  try { data = await response.json(); } catch (err) { data = { message: `服务器返回 ${response.status}` }; }
  if (!response.ok) {
    const detail = data.errors && typeof data.errors === 'object' ? Object.values(data.errors).slice(0, 3).join(';') : '';
    const error = new Error(`${data.message || data.error || `请求失败(${response.status})`}${detail ? `:${detail}` : ''}`);
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

// the message line under the toolbar: a success clears itself after a while; flashes from the last page go too
let timer = null;
export function message(box, text, kind = 'ok') {
  box.textContent = text;
  box.className = `studio-message studio-message-${kind}`;
  window.clearTimeout(timer);
  if (kind === 'ok' && text) timer = window.setTimeout(() => { if (box.textContent === text) box.textContent = ''; }, 8000);
  document.querySelectorAll('.flash').forEach((f) => f.remove());
}
