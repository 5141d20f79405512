// 流程设计 list page: fills the 模板 choice of 新建流程(简易模式) from the server's templates.
const select = document.getElementById('simple_template');
const hint = document.getElementById('simple_template_hint');

async function fill() {
  if (!select) return;
  try {
    const response = await fetch('/studio/api/simple/templates', { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (!response.ok) throw new Error(String(response.status));
    const { templates } = await response.json();
    select.replaceChildren(...templates.map((t) => {
      const option = document.createElement('option');
      option.value = t.id;
      option.textContent = t.name;
      option.dataset.description = t.description || '';
      return option;
    }));
    if (select.dataset.selected) select.value = select.dataset.selected; // the choice of a refused form
    if (!select.value && select.options.length) select.selectedIndex = 0;
    const describe = () => { hint.textContent = (select.selectedOptions[0] || {}).dataset?.description || ''; };
    select.addEventListener('change', describe);
    describe();
    select.dataset.ready = 'true';
  } catch (err) {
    const card = document.querySelector('[data-testid="studio-new-simple"]');
    if (card) card.hidden = true; // no simple designer on this server: only the BPMN form below
  }
}

fill();
